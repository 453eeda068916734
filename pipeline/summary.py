"""The job summary: what finished, how fast, and whether every input id is in the output once."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COMMITTED_COLUMNS = ("id", "status")                   # what summarize reads of every committed row
RUN_COLUMNS = ("status", "error", "sample_s", "nfe")   # and of the rows this run committed
_QUOTED = re.compile(r"'[^']*'")  # a path or URI quoted by an error, e.g. read: cannot read image 's3://b/x.png'
_SIZE = re.compile(r"\b\d+x\d+\b")


def summarize(output: pa.Table, new: pa.Table, input_ids: pa.Array, wall_s: float, actors: int) -> dict:
    """Summary of an output.

    Args:
        output: ``COMMITTED_COLUMNS`` of every committed row. new: ``RUN_COLUMNS`` of the rows
            committed by this run.
        input_ids: all input ids. wall_s: this run's wall time. actors: sampler actors in this run.
    """
    ids = output.column("id")
    distinct = pc.count_distinct(ids).as_py() if len(ids) else 0
    pending = pending_count(input_ids, ids)
    status = _counts(output.column("status"))
    new_ok = _count(pc.equal(new.column("status"), "ok"))
    failed = new.filter(pc.equal(new.column("status"), "error")).column("error")
    errors: Counter = Counter()
    for reason, n in _counts(failed).items():  # one Python step per distinct reason, not per row
        errors[_reason(reason)] += n
    sample_s = new.column("sample_s").drop_null().to_numpy().astype(float)
    nfe = pc.sum(new.column("nfe")).as_py() or 0
    busy = float(sample_s.sum()) / max(actors, 1)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(sample_s, q)), 4) if len(sample_s) else None

    return {
        "inputs": len(input_ids),
        "rows": len(ids),
        "ok": status.get("ok", 0),
        "error": status.get("error", 0),
        "pending": pending,
        "duplicates": len(ids) - distinct,
        "this_run": {
            "rows": new.num_rows,
            "ok": new_ok,
            "error": new.num_rows - new_ok,
            "wall_s": round(wall_s, 3),
            "items_per_s": round(new.num_rows / wall_s, 4) if wall_s > 0 else None,
            "sample_s_p50": pct(50), "sample_s_p95": pct(95),
            "sample_s_max": round(float(sample_s.max()), 4) if len(sample_s) else None,
            "sample_s_sum": round(float(sample_s.sum()), 4),
            "nfe": int(nfe),
            "nfe_per_s": round(nfe / wall_s, 3) if wall_s > 0 else None,
            "actors": actors,
            "overhead": round(wall_s / busy, 4) if busy > 0 else None,
            "error_reasons": dict(errors.most_common(10)),
        },
    }


def pending_count(input_ids: pa.Array, done: pa.Array) -> int:
    """How many of ``input_ids`` are not among the ``done`` ids."""
    return len(input_ids) - (_count(pc.is_in(input_ids, value_set=done)) if len(done) else 0)


def _count(mask) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _counts(values) -> Counter:
    """value -> occurrences, computed in Arrow (no Python object per row)."""
    if not len(values):
        return Counter()
    counted = pc.value_counts(values)
    return Counter(dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)))


def _reason(error: str | None) -> str:
    """An error grouped by its stage and first clause, e.g. 'decode: cannot decode image', with quoted
    names and WxH sizes blanked, so every missing object or oversized image is one reason."""
    text = _SIZE.sub("WxH", _QUOTED.sub("'…'", error or ""))
    return ":".join(text.split(":")[:2]).strip()


def format_summary(summary: dict) -> str:
    run = summary["this_run"]
    lines = [
        f"items: {summary['inputs']} inputs, {summary['rows']} output rows "
        f"({summary['ok']} ok, {summary['error']} error), {summary['pending']} pending, "
        f"{summary['duplicates']} duplicates",
        f"this run: {run['rows']} rows ({run['ok']} ok, {run['error']} error) in {run['wall_s']:.1f} s, "
        f"{_num(run['items_per_s'])} items/s, {_num(run['nfe_per_s'])} NFE/s, {run['actors']} actor(s)",
        f"sample_s: p50 {_num(run['sample_s_p50'])}  p95 {_num(run['sample_s_p95'])}  max {_num(run['sample_s_max'])}"
        f"  overhead (wall / (sum sample_s / actors)) {_num(run['overhead'])}",
    ]
    lines += [f"errors: {n} x {reason}" for reason, n in run["error_reasons"].items()]
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else f"{value:.3g}"
