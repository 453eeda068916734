"""The CPU stages around the sampler: ``prepare`` (read, decode, validate) and ``encode`` (PNG).

Both take and return pyarrow tables with fixed schemas. A bad item never raises: it becomes a row
whose ``error`` starts with the stage that failed (``read:``, ``decode:``, ``validate:``,
``encode:``) and whose ``error_kind`` says whether a rerun may help (:mod:`pipeline.errors`);
later stages pass it through untouched.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.errors import ItemError, error_kind, one_line
from pipeline.schema import SAMPLER_METRICS
from pipeline.storage import READ_ATTEMPTS, Storage, worth_retrying
from pipeline.tasks import TASKS, Task

MISSING_RETRIED_PER_BLOCK = 2  # objects of one block that may use every read attempt on staying missing

PREPARED_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("error", pa.string()),
    ("rgb", pa.binary()),       # uint8 (H, W, 3), C order
    ("mask", pa.binary()),      # float32 (H, W) in [0, 1], 1 = regenerate
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("prompt", pa.string()),
    ("seed", pa.int64()),
])


def default_seed(item_id: str) -> int:
    """A row's seed when the data has none: stable across runs, machines and batch layouts."""
    return zlib.crc32(item_id.encode()) & 0x7FFFFFFF


# -- prepare ------------------------------------------------------------------------------------
def prepare(batch: pa.Table, *, storage: Storage, prompt: str = "", max_side: int = 2048, task: str = "restore",
            options: dict | None = None, read_attempts: int = READ_ATTEMPTS, check_items: bool = True) -> pa.Table:
    """CPU stage: raw input rows -> decoded, validated rows (``PREPARED_SCHEMA``).

    Reads bytes (inline, HF ``{bytes, path}`` structs, or folder paths), decodes the image to uint8
    RGB (H, W, 3) and, for the tasks that take one (restore, layers), the mask to float32 (H, W) in
    [0, 1], and validates them for ``task`` with its ``options`` (:mod:`pipeline.tasks`; without the task's
    own item check when ``check_items`` is False: the tuner takes a restore item with an empty mask). Objects
    in object storage get ``read_attempts`` tries (local files one) before they are ``read:`` errors.
    """
    spec = TASKS[task]
    options = spec.check_options({}) if options is None else options  # the graph passes the job's checked options
    columns = {name: batch.column(name).to_pylist() for name in batch.column_names}
    columns["id"] = batch.column("id").cast(pa.string()).to_pylist()  # the same ids discovery and resume use
    rows, reads = [], _Reads(read_attempts)
    for i in range(batch.num_rows):
        item_id = columns["id"][i]
        row = {"id": item_id, "error": None, "rgb": None, "mask": None, "height": 0, "width": 0,
               "prompt": prompt, "seed": default_seed(item_id)}
        try:
            raw = {k: v[i] for k, v in columns.items()}
            row.update(_prepare_item(raw, storage, max_side, spec, options, reads, check_items))
        except ItemError as exc:
            row["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - an unforeseen failure is still one item's error row
            row["error"] = one_line("decode", f"unexpected {type(exc).__name__}: {exc}")
        if row["prompt"] is None:
            row["prompt"] = prompt
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=PREPARED_SCHEMA)


def _prepare_item(raw: dict, storage: Storage, max_side: int, task: Task, options: dict, reads: _Reads,
                  check_items: bool = True) -> dict:
    from fcs.images import image_size, to_rgb_array
    from fcs.tasks.inpaint import check_pair

    out = {}
    if raw.get("prompt") is not None:
        out["prompt"] = str(raw["prompt"])
    if raw.get("seed") is not None:
        try:
            out["seed"] = int(raw["seed"])
            if not -(2**63) <= out["seed"] < 2**63:
                raise ValueError
        except (TypeError, ValueError):
            raise ItemError(one_line("validate", f"seed {raw['seed']!r} is not a 64-bit integer")) from None
    image = _fetch(raw, "image", storage, reads)
    mask = _fetch(raw, "mask", storage, reads) if task.mask else None
    try:
        w, h = image_size(image)  # the header only: an oversized image is rejected before decoding
    except ValueError as exc:
        raise ItemError(one_line("decode", exc)) from None
    out_h, out_w = task.output_size(h, w, options)
    if max(out_h, out_w) > max_side:
        what = f"image is {w}x{h}" + (f", output {out_w}x{out_h}," if (out_h, out_w) != (h, w) else ",")
        raise ItemError(one_line("validate", f"{what} larger than max_side={max_side}; downscale it or raise max_side"))
    try:
        rgb = to_rgb_array(image)
    except ValueError as exc:
        raise ItemError(one_line("decode", exc)) from None
    h, w = rgb.shape[:2]  # after EXIF rotation, which the header's size is not
    mask_arr = _decode_mask(mask) if mask is not None else None
    if mask_arr is not None:
        out["mask"] = np.ascontiguousarray(mask_arr).tobytes()
    try:
        if mask_arr is not None:
            check_pair(rgb, mask_arr)
        if task.check_item and check_items:
            task.check_item(rgb, mask_arr, options)
    except ValueError as exc:
        raise ItemError(one_line("validate", exc)) from None
    return {**out, "rgb": np.ascontiguousarray(rgb).tobytes(), "height": h, "width": w}


def _decode_mask(mask: bytes) -> np.ndarray:
    """float32 (H, W) in [0, 1], 1 = regenerate (restore) or object region (layers)."""
    from fcs.images import to_mask_array

    try:
        return to_mask_array(mask).astype(np.float32)
    except ValueError as exc:
        raise ItemError(one_line("decode", str(exc).replace("cannot decode image", "cannot decode mask", 1))) from None


@dataclass
class _Reads:
    """The read tries of one block: each object gets ``attempts`` tries, but once
    MISSING_RETRIED_PER_BLOCK objects stayed missing through all of them, the block's later missing
    objects get one (a manifest with a wrong base would otherwise wait 1.75 s per item)."""

    attempts: int
    missing_left: int = MISSING_RETRIED_PER_BLOCK


def _fetch(raw: dict, name: str, storage: Storage, reads: _Reads) -> bytes:
    """The bytes of ``image`` or ``mask``: inline binary, an HF struct{bytes, path}, or a folder path."""
    value, path = raw.get(name), raw.get(f"{name}_path")
    if isinstance(value, dict):
        value, path = value.get("bytes"), value.get("path")
    if value is not None:
        return bytes(value)
    if not path:
        where = raw.get(f"{name}_missing") or "column is null"  # a source says why (pipeline.sources.base)
        raise ItemError(one_line("read", f"{name} is missing ({where})"))
    attempts = reads.attempts if storage.protocol != "file" else 1  # a local disk does not fail now and then
    retry_missing = reads.missing_left > 0
    try:
        return storage.read_bytes(storage.resolve(path), attempts, retry_missing)
    except Exception as exc:  # noqa: BLE001 - any IO failure is this item's error
        exhausted = attempts > 1 and worth_retrying(exc, retry_missing)  # else it failed without retries
        if exhausted and isinstance(exc, FileNotFoundError):
            reads.missing_left -= 1
        tries = f" after {attempts} attempts" if exhausted else ""
        raise ItemError(one_line("read", f"cannot read {name} {path!r}{tries}: {type(exc).__name__}: {exc}")) from None


# -- encode -------------------------------------------------------------------------------------
def encode(batch: pa.Table, *, model: str, task: str) -> pa.Table:
    """CPU stage: sampler rows -> output rows (the task's schema, ``Task.schema``), output pixels as PNG
    struct{bytes, path} of the output size (``height``, ``width``); the status is ``ok`` exactly when
    ``image`` is set. Extra output images (layers: foreground RGBA, background RGB, alpha greyscale)
    get PNG columns of their own, named ``<id>-<column>.png``."""
    spec = TASKS[task]
    cols = {name: batch.column(name).to_pylist() for name in batch.column_names}
    n = batch.num_rows
    pngs: dict[str, list] = {name: [None] * n for name in ("image", *spec.extra_images)}
    errors = list(cols["error"])
    for i, pixels in enumerate(cols.get("out", [None] * n)):
        if errors[i] is not None or pixels is None:
            errors[i] = errors[i] or "sample: no output image"
            continue
        try:
            item = {"image": _png(cols, i, "out", ""), **{name: _png(cols, i, name, f"-{name}")
                                                          for name in spec.extra_images}}
        except Exception as exc:  # noqa: BLE001
            errors[i] = one_line("encode", f"{type(exc).__name__}: {exc}")
            continue
        for name, png in item.items():
            pngs[name][i] = png

    def column(name: str) -> list:
        return cols.get(name, [None] * n)

    def stamp(name: str) -> list:
        return [None if v is None else dt.datetime.fromtimestamp(v, dt.timezone.utc) for v in column(name)]

    data = {
        "id": cols["id"], "status": ["error" if e else "ok" for e in errors], "error": errors,
        "error_kind": [error_kind(e) for e in errors], "image": pngs["image"],
        **{name: column(name) for name in SAMPLER_METRICS.names},
        "model": [model] * n, "task": [task] * n, "seed": column("seed"),
        "started_at": stamp("started_at"), "finished_at": stamp("finished_at"),
        **{name: pngs[name] for name in spec.extra_images},
    }
    return pa.Table.from_pydict(data, schema=spec.schema)


def _png(cols: dict, i: int, column: str, suffix: str) -> dict:
    """Row i's raw uint8 pixels in ``column`` as a PNG struct; channels (1, 3 or 4) follow from the size."""
    from fcs.images import encode_png

    h, w = cols["height"][i], cols["width"][i]
    raw = cols[column][i]
    channels = len(raw) // (h * w)
    pixels = np.frombuffer(raw, np.uint8).reshape((h, w) if channels == 1 else (h, w, channels))
    return {"bytes": encode_png(pixels), "path": f"{cols['id'][i]}{suffix}.png"}
