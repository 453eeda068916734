"""The CPU stages without Ray: prepare (read/decode/validate) and encode (PNG, output schema)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image
from pipeline_testdata import bad_input_rows, hole, photo, png

from pipeline.output import OUTPUT_SCHEMA
from pipeline.stages import PREPARED_SCHEMA, default_seed, encode, one_line, prepare
from pipeline.storage import Storage


def _prepare(rows, tmp_path, **kw) -> dict:
    table = prepare(pa.Table.from_pylist(rows), storage=Storage.from_uri(str(tmp_path)), **kw)
    assert table.schema == PREPARED_SCHEMA
    return {r["id"]: r for r in table.to_pylist()}


def test_every_awkward_input_gets_a_row_with_a_staged_reason(tmp_path):
    rows, expected = bad_input_rows()
    out = _prepare(rows, tmp_path)
    assert set(out) == set(expected)
    for key, want in expected.items():
        if want == "ok":
            assert out[key]["error"] is None, (key, out[key]["error"])
        else:
            assert out[key]["error"].startswith(want), (key, out[key]["error"])
            assert out[key]["rgb"] is None


def test_decoded_pixels_and_mask_round_trip(tmp_path):
    img, m = photo(44, 60), hole(44, 60)
    row = _prepare([{"id": "a", "image": png(img), "mask": png(m), "prompt": "a cat", "seed": 7}], tmp_path)["a"]
    assert (row["height"], row["width"], row["prompt"], row["seed"]) == (44, 60, "a cat", 7)
    assert np.array_equal(np.frombuffer(row["rgb"], np.uint8).reshape(44, 60, 3), img)
    mask = np.frombuffer(row["mask"], np.float32).reshape(44, 60)
    assert mask.max() == 1.0 and mask.min() == 0.0


def test_hf_struct_images_with_bytes_or_a_path(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "b.png").write_bytes(png(photo()))
    rows = [
        {"id": "a", "image": {"bytes": png(photo()), "path": "a.png"}, "mask": {"bytes": png(hole()), "path": None}},
        {"id": "b", "image": {"bytes": None, "path": "pics/b.png"}, "mask": {"bytes": png(hole()), "path": None}},
        {"id": "c", "image": {"bytes": None, "path": "pics/nope.png"}, "mask": {"bytes": png(hole()), "path": None}},
    ]
    out = _prepare(rows, tmp_path)
    assert out["a"]["error"] is None and out["b"]["error"] is None
    assert out["c"]["error"].startswith("read: cannot read image 'pics/nope.png'")


def test_default_seed_and_prompt_and_max_side(tmp_path):
    out = _prepare([{"id": "x", "image": png(photo()), "mask": png(hole()), "seed": None, "prompt": None}],
                   tmp_path, prompt="default prompt", max_side=32)
    assert out["x"]["seed"] == default_seed("x") and out["x"]["prompt"] == "default prompt"
    assert out["x"]["error"].startswith("validate: image is 64x64, larger than max_side=32")
    bad_seed = _prepare([{"id": "y", "image": png(photo()), "mask": png(hole()), "seed": "abc"}], tmp_path)
    assert bad_seed["y"]["error"] == "validate: seed 'abc' is not a 64-bit integer"


def test_one_line_reasons():
    assert one_line("decode", ValueError("a\nb  c")) == "decode: a b c"
    assert one_line("sample", "sample: x") == "sample: x"
    assert len(one_line("read", "y" * 1000)) == 300


def test_encode_makes_the_output_contract():
    img = photo(8, 16)
    batch = pa.Table.from_pylist([
        {"id": "ok", "error": None, "out": img.tobytes(), "height": 8, "width": 16, "seed": 1, "sample_s": 0.5,
         "batch_size": 2, "nfe": 6, "residual_init": 1.0, "residual_final": 0.5, "peak_mem_mb": 10.0,
         "worker": "w", "node": "n", "device": "cpu", "started_at": 1.7e9, "finished_at": 1.7e9 + 1},
        {"id": "bad", "error": "decode: cannot decode image: x", "out": None, "height": 0, "width": 0, "seed": 2,
         "sample_s": None, "batch_size": None, "nfe": None, "residual_init": None, "residual_final": None,
         "peak_mem_mb": None, "worker": None, "node": None, "device": None, "started_at": None, "finished_at": None},
    ])
    out = encode(batch, model="tiny", task="restore")
    assert out.schema == OUTPUT_SCHEMA
    ok, bad = out.to_pylist()
    assert ok["status"] == "ok" and ok["image"]["path"] == "ok.png" and ok["model"] == "tiny"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ok["image"]["bytes"]))), img)
    assert bad["status"] == "error" and bad["image"] is None and bad["error"].startswith("decode:")
    assert bad["task"] == "restore" and bad["seed"] == 2


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is that of a 1x1 image: decoding
    it would need width·height·3 bytes, reading its header needs none."""
    import struct
    import zlib

    data = bytearray(png(photo(1, 1)))
    ihdr = 8  # the IHDR chunk follows the 8-byte signature: length, type, width, height, ...
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])))
    return bytes(data)


def test_oversized_images_are_rejected_from_the_header_before_decoding(tmp_path):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = _prepare([{"id": "bomb", "image": _png_claiming(12000, 12000), "mask": png(hole())}], tmp_path)
    assert out["bomb"]["error"] == ("validate: image is 12000x12000, larger than max_side=2048; downscale it or "
                                    "raise max_side")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # decoding would need 432 MB


def test_error_reasons_are_stable_strings(tmp_path):
    rows = [{"id": f"junk{k}", "image": b"not an image at all", "mask": png(hole())} for k in range(2)]
    out = _prepare(rows, tmp_path)
    assert out["junk0"]["error"] == out["junk1"]["error"] == (
        "decode: cannot decode image: not a recognised image format (PNG, JPEG, WebP, TIFF, ...)")
    address = "cannot read <_io.BytesIO object at 0x7f3a2c1b5e40>"
    assert one_line("read", address) == "read: cannot read <_io.BytesIO object>"


def test_exif_rotated_photos_keep_their_decoded_shape(tmp_path):
    """A phone JPEG stored 30x12 with EXIF orientation 6 decodes upright as 12x30: the row's height and
    width are those of the decoded pixels (the header check before decoding only bounds the size)."""
    img = Image.fromarray(photo(12, 30))
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    out = _prepare([{"id": "phone", "image": buf.getvalue(), "mask": png(hole(30, 12))}], tmp_path)["phone"]
    assert out["error"] is None, out["error"]
    assert (out["height"], out["width"]) == (30, 12) and len(out["rgb"]) == 30 * 12 * 3


def test_the_summary_groups_equal_failures_of_different_items():
    """Reasons that differ only by the item's path or size count as one reason."""
    from pipeline.summary import summarize

    errors = [f"read: cannot read image 's3://b/images/{k}.png' after 4 attempts: FileNotFoundError: {k}.png"
              for k in range(3)]
    errors += [f"validate: image is {s}x{s}, larger than max_side=2048; downscale it or raise max_side"
               for s in (3000, 12000)]
    errors += ["decode: cannot decode image: not a recognised image format (PNG, JPEG, WebP, TIFF, ...)"]
    n = len(errors) + 1
    new = pa.table({"status": ["error"] * len(errors) + ["ok"], "error": errors + [None],
                    "sample_s": [None] * len(errors) + [1.0], "nfe": [0] * len(errors) + [20]})
    ids = pa.array([f"i{k}" for k in range(n)])
    summary = summarize(pa.table({"id": ids, "status": new.column("status")}), new, ids, 1.0, 1)
    assert summary["this_run"]["error_reasons"] == {
        "read: cannot read image '…' after 4 attempts": 3,
        "validate: image is WxH, larger than max_side=2048; downscale it or raise max_side": 2,
        "decode: cannot decode image": 1,
    }


def test_missing_objects_stop_costing_retries_within_a_block(monkeypatch):
    """Object reads are retried, but once two objects of a block stayed missing through every attempt,
    its other missing objects get one try each; a denied read is never retried."""
    import fsspec

    from pipeline import storage as storage_module
    from pipeline.stages import MISSING_RETRIED_PER_BLOCK

    monkeypatch.setattr(storage_module, "READ_BACKOFF_S", 0.0)
    store = Storage.from_uri("memory://fcs-test-missing/in")
    store.fs.pipe(store.path("masks/m.png"), png(hole()))
    tries: dict[str, int] = {}
    cat_file = store.fs.cat_file

    def counted(path, *args, **kwargs):
        tries[path.rsplit("/", 1)[-1]] = tries.get(path.rsplit("/", 1)[-1], 0) + 1
        if path.endswith("denied.png"):
            raise PermissionError("access denied")
        return cat_file(path, *args, **kwargs)

    monkeypatch.setattr(store.fs, "cat_file", counted)
    names = [f"gone{k}.png" for k in range(5)] + ["denied.png"]
    rows = [{"id": n, "image": {"bytes": None, "path": f"images/{n}"}, "mask": {"bytes": None, "path": "masks/m.png"}}
            for n in names]
    out = prepare(pa.Table.from_pylist(rows), storage=store, read_attempts=4).to_pylist()
    errors = {r["id"]: r["error"] for r in out}
    assert MISSING_RETRIED_PER_BLOCK == 2
    assert [tries[n] for n in names] == [4, 4, 1, 1, 1, 1]
    assert all(e.startswith(f"read: cannot read image 'images/{n}'") for n, e in errors.items())
    assert "after 4 attempts" in errors["gone0.png"] and "after 4 attempts" not in errors["gone2.png"]
    assert errors["denied.png"].endswith("PermissionError: access denied")
    fsspec.filesystem("memory").rm("/fcs-test-missing", recursive=True)
