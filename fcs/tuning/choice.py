"""The rule that picks a candidate from its measured numbers.

Among the candidates that finished every problem (and cost at most ``max_calls`` UNet calls per item,
when given) and are not over-smooth (mean ``detail`` >= :data:`DETAIL_FLOOR`, unless none is), the
best is the one with the highest mean hole PSNR; the choice is the cheapest (fewest mean UNet calls per
item, then the higher PSNR) whose mean PSNR is within ``tolerance_db`` of the best's.
"""

from __future__ import annotations

from collections.abc import Sequence

TOLERANCE_DB = 0.1  # how much PSNR a cheaper candidate may give up against the best. 0.1 rather than 0.3:
# checked on held-out problems (benchmarks/tuning.py), 0.1 passes photo and oracle-gauss, 0.3 only photo (at 0.3
# the rule trades down to candidates the training problems cannot tell apart from the best)
# below this a fill keeps under 15 % of the truth's fine-scale energy: a smooth interpolation. Measured once,
# by hand, on the demo's photos: the biharmonic fill 0.11, every sampler candidate 0.20-0.32 (fcs tune prints
# the candidates' detail; no benchmark prints the biharmonic's yet)
DETAIL_FLOOR = 0.15


def describe(tolerance_db: float = TOLERANCE_DB, max_calls: int | None = None) -> str:
    budget = f" at most {max_calls} UNet calls per item," if max_calls else ""
    return (f"among candidates that finished every problem,{budget} with mean detail >= {DETAIL_FLOOR} (unless "
            f"none has): the fewest mean UNet calls per item whose mean hole PSNR is within {tolerance_db} dB of "
            "the best")


def choose(candidates: Sequence[dict], tolerance_db: float = TOLERANCE_DB, max_calls: int | None = None) -> dict:
    """The chosen entry of ``candidates`` (dicts with ``name``, ``calls``, ``complete`` and ``psnr`` /
    ``detail`` summaries); ValueError naming why none can be chosen."""
    done = [c for c in candidates if c["complete"]]
    if not done:
        raise ValueError(f"none of the {len(candidates)} candidate(s) finished the problems (see their errors)")
    within = [c for c in done if max_calls is None or c["calls"] <= max_calls]
    if not within:
        cheapest = min(done, key=lambda c: c["calls"])
        raise ValueError(f"no candidate costs at most {max_calls} UNet calls per item (the cheapest, "
                         f"{cheapest['name']}, costs {cheapest['calls']:g}); raise --max-calls")
    sharp = [c for c in within if c["detail"]["mean"] >= DETAIL_FLOOR] or within
    best = max(sharp, key=lambda c: c["psnr"]["mean"])
    good = [c for c in sharp if c["psnr"]["mean"] >= best["psnr"]["mean"] - tolerance_db]
    return min(good, key=lambda c: (c["calls"], -c["psnr"]["mean"]))
