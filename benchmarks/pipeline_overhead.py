"""Pipeline overhead: does the sampler ever wait on IO?

For N items with the tiny model, run the restore job with 1 and 2 sampler actors on a fresh local Ray
cluster and report

    overhead = wall_time / (sum(sample_s) / actors)

where sum(sample_s) is the time the actors spent inside the sampler. 1.0 means the sampler never
waited; the target is <= 1.15. "steady" uses the sampler window (first batch start to last batch
end, so actor start-up and model loading are excluded); "job" uses the whole job's wall time.

    python benchmarks/pipeline_overhead.py                      # 256 items, actors 1 and 2
    python benchmarks/pipeline_overhead.py --items 512 --size 128 --actors 1 2 4

Writes benchmarks/results/pipeline_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path:
    sys.path.insert(0, str(ROOT.parent))


def make_shards(folder: Path, items: int, size: int, per_shard: int = 64) -> None:
    """``items`` synthetic photos (smooth gradients plus noise) with box masks, as Parquet shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 3: 2 * size // 3] = 255
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(items):
        base = np.stack([yy, xx, 1 - yy], -1) * 160 + rng.uniform(0, 80, 3)
        rgb = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        rows.append({"id": f"bench-{i:05d}", "image": png(rgb), "mask": png(mask)})
    for k in range(0, items, per_shard):
        pq.write_table(pa.Table.from_pylist(rows[k:k + per_shard]), folder / f"shard-{k // per_shard:04d}.parquet")


def measure(workdir: Path, items: int, size: int, batch_size: int, steps: int, newton_steps: int,
            actors: list[int]) -> list[dict]:
    """One job per actor count over the same input; returns one result dict per job."""
    import pipeline
    from pipeline.config import JobConfig
    from pipeline.output import read_output
    from pipeline.storage import Storage

    make_shards(workdir / "in", items, size)
    results = []
    for n in actors:
        out = workdir / f"out-{n}"
        cfg = JobConfig(input=str(workdir / "in"), output=str(out), model="tiny", actors=n, batch_size=batch_size,
                        gpus_per_actor=0, sampler={"steps": steps, "newton_steps": newton_steps})
        summary = pipeline.run(cfg)
        table = read_output(Storage.from_uri(str(out)), columns=["sample_s", "started_at", "finished_at", "status"])
        sample_s = np.array(table.column("sample_s").to_pylist(), dtype=float)
        starts = [t.timestamp() for t in table.column("started_at").to_pylist()]
        ends = [t.timestamp() for t in table.column("finished_at").to_pylist()]
        busy = float(np.nansum(sample_s)) / n
        steady = max(ends) - min(starts)
        wall = summary["this_run"]["wall_s"]
        results.append({
            "actors": n, "items": items, "ok": summary["ok"], "size": size, "batch_size": batch_size,
            "steps": steps, "newton_steps": newton_steps, "nfe_per_item": steps * (1 + 2 * newton_steps),
            "sum_sample_s": round(float(np.nansum(sample_s)), 3), "steady_s": round(steady, 3),
            "job_wall_s": round(wall, 3),
            "overhead_steady": round(steady / busy, 4), "overhead_job": round(wall / busy, 4),
            "items_per_s_steady": round(items / steady, 3), "items_per_s_job": round(items / wall, 3),
        })
        print(_row(results[-1]), flush=True)
    return results


HEADER = ("| actors | items | sum sample_s | steady s | job wall s | overhead (steady) | overhead (job) "
          "| items/s (steady) | items/s (job) |\n|---|---|---|---|---|---|---|---|---|")


def _row(r: dict) -> str:
    return (f"| {r['actors']} | {r['items']} | {r['sum_sample_s']:.1f} | {r['steady_s']:.1f} | {r['job_wall_s']:.1f} "
            f"| {r['overhead_steady']:.3f} | {r['overhead_job']:.3f} | {r['items_per_s_steady']:.2f} "
            f"| {r['items_per_s_job']:.2f} |")


def write_results(results: list[dict], out: Path, command: str) -> None:
    import ray

    meta = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
            "cpus": __import__("os").cpu_count(), "ray": ray.__version__, "model": "tiny (random weights)",
            "target_overhead": 1.15}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "# Pipeline overhead (tiny model)", "",
        "overhead = wall / (sum(sample_s) / actors); steady = first sampler batch start to last batch end",
        "(excludes actor start-up and model loading); job = the whole job. Target: <= 1.15.", "",
        f"Command: `{command}`  ",
        f"Machine: {meta['machine']}, {meta['cpus']} CPUs, Ray {meta['ray']}, {meta['date']}", "",
        HEADER, *(_row(r) for r in results), "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=256)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--newton-steps", type=int, default=2)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "pipeline_overhead.json")
    args = p.parse_args(argv)

    import logging

    import ray

    logging.basicConfig(level=logging.WARNING)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(HEADER)
    try:
        with tempfile.TemporaryDirectory(prefix="fcs-bench-") as tmp:
            results = measure(Path(tmp), args.items, args.size, args.batch_size, args.steps, args.newton_steps,
                              args.actors)
    finally:
        ray.shutdown()
    command = "python benchmarks/pipeline_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(results, args.out, command.strip())
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
