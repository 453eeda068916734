"""From the samples of every candidate on every problem to the candidates' numbers and the record.

Both ways of running a tuning, the job (:mod:`pipeline.tuning`) and this process
(:func:`fcs.tuning.local.tune`), hand their samples here; only how the samples were made differs.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from fcs.tuning import choice, record, scores


def evaluate(candidates: Sequence[dict], problems: Sequence[str], results: dict, truth: dict) -> tuple[list, list]:
    """(one entry per candidate, the problems scored). ``candidates``: plan entries (name, preset,
    changes, settings, nfe_per_item); ``results``: (candidate index, problem id) -> {image (uint8 array
    or None), error, nfe, sample_s, peak_mem_mb}; ``truth``: problem id -> (truth, region). A problem no
    candidate finished is left out; a candidate that missed one the others finished is incomplete."""
    ok = {key: r for key, r in results.items() if r.get("error") is None and r.get("image") is not None}
    valid = [p for p in problems if any((k, p) in ok for k in range(len(candidates)))]
    entries = []
    for k, entry in enumerate(candidates):
        mine = [(p, ok[(k, p)]) for p in valid if (k, p) in ok]
        failed = [r for (key, p), r in results.items() if key == k and (key, p) not in ok]
        per = [scores.score(truth[p][0], r["image"], truth[p][1]) for p, r in mine]
        entries.append({
            **entry, "complete": len(mine) == len(valid), "ok": len(mine), "errors": len(failed),
            "error": failed[0].get("error") if failed else None,
            "calls": round(float(np.mean([r["nfe"] for _, r in mine])), 2) if mine else entry["nfe_per_item"],
            **(scores.summarize(per) if per else {s: None for s in scores.SCORES}),
            "per_problem": {p: {name: round(v, 4) for name, v in s.items()}
                            for (p, _), s in zip(mine, per, strict=True)},
            "sample_s": round(float(np.mean([r["sample_s"] for _, r in mine])), 3) if mine else None,
            "peak_mem_mb": round(float(max(r["peak_mem_mb"] for _, r in mine)), 1) if mine else None,
        })
    return entries, valid


def paired(entry: dict, best: dict) -> dict | None:
    """``entry``'s hole PSNR minus ``best``'s on the same problems: {mean, low, high} (95 % bootstrap),
    tighter than comparing the two intervals, since both ran the same problems and noise."""
    shared = [p for p in entry["per_problem"] if p in best["per_problem"]]
    if not shared:
        return None
    diffs = [entry["per_problem"][p]["psnr"] - best["per_problem"][p]["psnr"] for p in shared]
    low, high = scores.interval(diffs)
    return {"mean": round(float(np.mean(diffs)), 4), "low": round(low, 4), "high": round(high, 4)}


def errors(results: dict) -> Counter:
    """How many samples failed, per error."""
    return Counter(str(r.get("error"))[:120] for r in results.values() if r.get("error") is not None)


def make_record(*, task: str, task_options: dict, model: str, entries: list, valid: list, sources: dict,
                items: dict, held: dict, tolerance_db: float, max_calls: int | None, hardware: dict,
                input: str, **extra) -> dict:
    """The tuning record (:mod:`fcs.tuning.record`) of ``entries``, the candidate chosen by the rule.
    ``sources``: problem id -> the input item it came from; ``items``: read, skipped (counts)."""
    import torch

    top = max((e for e in entries if e["complete"] and e["psnr"]), key=lambda e: e["psnr"]["mean"])
    for e in entries:
        e["psnr_vs_best"] = paired(e, top)
    made = {
        "format": record.FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fcs_version": record.fcs_version(), "task": task, "task_options": task_options,
        "model": {"id": model, "fingerprint": record.fingerprint(model)},
        "held": held, "input": input,
        "items": {"read": items["read"], "used": len(valid), "ids": [sources[p] for p in valid], "problems": valid,
                  "skipped": items["skipped"], "failed_problems": items["problems"] - len(valid)},
        "hardware": {"torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, **hardware},
        **extra,
        "candidates": entries,
    }
    return rechoose(made, tolerance_db, max_calls)


def rechoose(made: dict, tolerance_db: float = choice.TOLERANCE_DB, max_calls: int | None = None) -> dict:
    """``made`` (a record) with its ``rule`` and ``chosen`` set by the rule at ``tolerance_db`` and
    ``max_calls`` from the candidates' numbers it holds: another rule needs no new samples."""
    best = choice.choose([e for e in made["candidates"] if e["psnr"]], tolerance_db, max_calls)
    made["rule"] = {"text": choice.describe(tolerance_db, max_calls), "tolerance_db": tolerance_db,
                    "max_calls": max_calls, "detail_floor": choice.DETAIL_FLOOR}
    made["chosen"] = {k: best[k] for k in ("name", "preset", "changes", "settings", "calls", "psnr", "ssim", "detail")}
    return made
