"""Small image/mask data for the pipeline tests (a module, not fixtures, so subprocess scripts can
use it too)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

FAST = {"steps": 2, "newton_steps": 1}


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def photo(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB test picture (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([yy, xx, 1 - yy], -1) * 160 + rng.uniform(0, 80, 3)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def hole(h: int = 64, w: int = 64) -> np.ndarray:
    """uint8 mask (H, W), 255 = regenerate: a centred box."""
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    return m


def good_rows(n: int, size: int = 64, prefix: str = "item") -> list[dict]:
    return [{"id": f"{prefix}-{i:03d}", "image": png(photo(size, size, i)), "mask": png(hole(size, size))}
            for i in range(n)]


def write_shards(folder: Path, rows: list[dict], per_shard: int = 8) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(0, len(rows), per_shard):
        path = folder / f"shard-{k // per_shard:04d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[k:k + per_shard]), path)
        paths.append(path)
    return paths


def read_rows(output: str, columns: list[str] | None = None, endpoint: str | None = None) -> pa.Table:
    """Committed output rows (through the pipeline's own storage layer)."""
    from pipeline.output import OUTPUT_SCHEMA, read_output
    from pipeline.storage import Storage

    return read_output(Storage.from_uri(output, endpoint), columns=columns or OUTPUT_SCHEMA.names)


def assert_exactly_once(table: pa.Table, ids) -> None:
    got = table.column("id").to_pylist()
    assert len(got) == len(set(got)), f"duplicated ids: {sorted(i for i in set(got) if got.count(i) > 1)[:5]}"
    assert set(got) == set(ids), f"missing {sorted(set(ids) - set(got))[:5]}, extra {sorted(set(got) - set(ids))[:5]}"


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bad_input_rows() -> tuple[list[dict], dict[str, str]]:
    """Rows covering the awkward inputs, and for each id the expected outcome: "ok" or the start of
    its error reason."""
    img, m = photo(), hole()
    gray = photo()[..., 0]
    rgba = np.dstack([photo(), np.full((64, 64), 200, np.uint8)])
    deep = (photo()[..., 1].astype(np.uint16) * 257)
    cases = {
        "corrupt-bytes": ({"image": b"\x89PNG but not really an image", "mask": png(m)}, "decode: cannot decode image"),
        "truncated-png": ({"image": png(img)[:300], "mask": png(m)}, "decode: cannot decode image"),
        "corrupt-mask": ({"image": png(img), "mask": b"garbage"}, "decode: cannot decode mask"),
        "wrong-size-mask": ({"image": png(img), "mask": png(hole(32, 32))},
                            "validate: mask is 32x32 but image is 64x64"),
        "missing-mask": ({"image": png(img), "mask": None}, "read: mask is missing"),
        "missing-image": ({"image": None, "mask": png(m)}, "read: image is missing"),
        "empty-mask": ({"image": png(img), "mask": png(np.zeros((64, 64), np.uint8))}, "validate: mask is empty"),
        "white-mask": ({"image": png(img), "mask": png(np.full((64, 64), 255, np.uint8))}, "ok"),
        "grayscale": ({"image": png(gray), "mask": png(m)}, "ok"),
        "rgba": ({"image": png(rgba), "mask": png(m)}, "ok"),
        "16-bit": ({"image": png(deep), "mask": png(m)}, "ok"),
        "odd-size-60x44": ({"image": png(photo(44, 60)), "mask": png(hole(44, 60))}, "ok"),
        "jpeg": ({"image": jpeg(img), "mask": png(m)}, "ok"),
        "plain": ({"image": png(img), "mask": png(m)}, "ok"),
    }
    rows = [{"id": key, **value} for key, (value, _) in cases.items()]
    return rows, {key: expected for key, (_, expected) in cases.items()}


def check_outcomes(table: pa.Table, expected: dict[str, str]) -> None:
    """Every expected id is present once with the expected status and reason prefix."""
    rows = {r["id"]: r for r in table.to_pylist()}
    assert set(rows) == set(expected)
    for key, want in expected.items():
        row = rows[key]
        if want == "ok":
            assert row["status"] == "ok" and row["error"] is None, (key, row["error"])
        else:
            assert row["status"] == "error" and row["error"].startswith(want), (key, row["error"])
            assert "\n" not in row["error"]


def wait_for(predicate, timeout: float, every: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def committed(out: Path) -> list[Path]:
    """The committed output files of a local output folder."""
    return sorted(out.glob("part-*.parquet"))
