"""The pipeline's own costs at scale: a stand-in sampler that returns its input, so only the pipeline shows.

    python benchmarks/scale.py                            # 10k, 100k, 1M ids; throughput on 10k
    python benchmarks/scale.py --sizes 10000 --run 2000   # quicker

For each size N (ids over Parquet shards of 1,000 tiny 32x32 items), in a fresh process each, so
the driver's peak memory is its own: discovery time and driver peak RSS; resume with half the ids
committed (claim + read committed ids + what is pending per shard); the end-of-job summary over the
committed rows. Then one real job on the local Ray cluster with the stand-in sampler over ``--run``
items: items/s end to end (without cluster start-up), output file count and sizes. Writes
benchmarks/results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results"
SHARD_ROWS = 1000


def tiny_png(size: int = 32) -> bytes:
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    pixels = np.stack([yy * 8, xx * 8, (yy + xx) * 4], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def make_input(folder: Path, n: int) -> None:
    """``n`` items (id, image, mask) in shards of SHARD_ROWS rows; every item shares its bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    image, mask_png = tiny_png(), buf.getvalue()
    for start in range(0, n, SHARD_ROWS):
        rows = min(SHARD_ROWS, n - start)
        table = pa.table({"id": pa.array([f"item-{i:08d}" for i in range(start, start + rows)]),
                          "image": pa.array([image] * rows, pa.binary()),
                          "mask": pa.array([mask_png] * rows, pa.binary())})
        pq.write_table(table, folder / f"shard-{start // SHARD_ROWS:05d}.parquet")


def commit_half(out: Path, ids, rows_per_file: int) -> None:
    """The output a crashed job leaves: the first half of ``ids`` committed as ok rows, in files of
    ``rows_per_file`` rows, through the pipeline's own commit."""
    import pyarrow as pa

    from pipeline import leases, output
    from pipeline.schema import OUTPUT_SCHEMA
    from pipeline.storage import Storage

    store = Storage.from_uri(str(out))
    output.claim(store, "crashed-run")
    half = ids.slice(0, len(ids) // 2)
    image = {"bytes": tiny_png(), "path": None}
    for start in range(0, len(half), rows_per_file):
        chunk = half.slice(start, rows_per_file)
        n = len(chunk)
        table = pa.table({"id": chunk, "status": pa.array(["ok"] * n), "image": pa.array([image] * n),
                          "sample_s": pa.array([0.01] * n), "nfe": pa.array([0] * n, pa.int64())})
        missing = [f for f in OUTPUT_SCHEMA if f.name not in table.column_names]
        for f in missing:
            table = table.append_column(f, pa.nulls(n, f.type))
        output.commit(store, "crashed-run", table.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA))
    leases.release(store, "crashed-run")  # by the rerun, the crashed run's lease is over


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_driver(work: Path, n: int, rows_per_file: int) -> dict:
    """Discovery, resume and summary at ``n`` ids (run in a process of its own)."""
    import pyarrow.compute as pc

    from pipeline import output, sources
    from pipeline.storage import Storage
    from pipeline.summary import COMMITTED_COLUMNS, RUN_COLUMNS, summarize

    inputs_dir, out = work / "in", work / "out"
    make_input(inputs_dir, n)
    base = peak_mb()
    start = time.perf_counter()
    inputs = sources.discover(Storage.from_uri(str(inputs_dir)))
    discover_s, discover_mb = time.perf_counter() - start, peak_mb()
    commit_half(out, inputs.ids, rows_per_file)

    start = time.perf_counter()
    store = Storage.from_uri(str(out))
    before = output.claim(store, "rerun")
    done = output.read_output(store, before, ["id"]).column("id").combine_chunks()
    pending = len(inputs.ids) - int(pc.sum(pc.is_in(inputs.ids, value_set=done)).as_py())
    untouched, partial = sources.split_shards(inputs, done)
    resume_s = time.perf_counter() - start

    start = time.perf_counter()
    summary = summarize(output.read_output(store, before, list(COMMITTED_COLUMNS)),
                        output.read_output(store, before, list(RUN_COLUMNS)), inputs.ids, 1.0, 1)
    summary_s = time.perf_counter() - start
    return {"ids": n, "shards": len(inputs.data.files), "discover_s": discover_s, "discover_peak_mb": discover_mb,
            "start_mb": base, "resume_s": resume_s, "pending": pending, "shards_to_read": len(untouched) + len(partial),
            "committed_files": len(before), "summary_s": summary_s, "summary_rows": summary["rows"],
            "driver_peak_mb": peak_mb()}


def run_job(work: Path, n: int, batch_size: int, rows_per_file: int) -> dict:
    """:func:`standin_job` on a fresh local Ray cluster of its own."""
    import ray
    from ray.data import DataContext

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    DataContext.get_current().enable_progress_bars = False
    try:
        return standin_job(work, n, batch_size, rows_per_file)
    finally:
        ray.shutdown()


def standin_job(work: Path, n: int, batch_size: int, rows_per_file: int) -> dict:
    """One real job with the stand-in sampler on the connected Ray cluster: items/s and the files it wrote."""
    import pipeline
    from pipeline.config import JobConfig

    make_input(work / "in", n)
    summary = pipeline.run(JobConfig(input=str(work / "in"), output=str(work / "out"), model="tiny",
                                     batch_size=batch_size, rows_per_file=rows_per_file), actor_cls=_standin())
    files = sorted((work / "out").glob("part-*.parquet"))
    sizes = [f.stat().st_size for f in files]
    run = summary["this_run"]
    return {"items": n, "ok": summary["ok"], "wall_s": run["wall_s"], "items_per_s": run["items_per_s"],
            "files": len(files), "file_mb_mean": sum(sizes) / len(sizes) / 2**20 if sizes else 0.0,
            "rows_per_file": rows_per_file, "batch_size": batch_size, "duplicates": summary["duplicates"]}


def _standin() -> type:
    """The sampler actor with no model: each item's output is its input pixels. Made in a function,
    so Ray ships the class to its workers by value (they cannot import this script)."""
    import socket

    from pipeline.actor import OUTPUT_COLUMNS, TaskActor
    from pipeline.tasks import TASKS

    class StandInActor(TaskActor):
        def __init__(self, model: str, task: str = "restore", **_: object) -> None:  # noqa: ARG002
            self.task = TASKS[task]
            self.options, self.columns = self.task.check_options({}), OUTPUT_COLUMNS + self.task.extra_images
            self.worker, self.node, self.device, self.min_side, self.pad_to = "stand-in", socket.gethostname(), \
                "cpu", 1, None

        def _sample(self, batch: dict, rows: list[dict], todo: list[int]) -> None:
            now = time.time()
            for i in todo:
                rows[i].update(out=batch["rgb"][i], sample_s=0.0, batch_size=len(todo), nfe=0, residual_init=0.0,
                               residual_final=0.0, peak_mem_mb=0.0, worker=self.worker, node=self.node,
                               device=self.device, started_at=now, finished_at=now)

    return StandInActor


def in_subprocess(step: str, work: Path, **kwargs) -> dict:
    """Run ``step`` in a fresh Python (its own peak memory, its own Ray)."""
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import scale; from pathlib import Path; "
            f"print('RESULT', json.dumps(scale.{step}(Path({str(work)!r}), **{kwargs!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def markdown(driver: list[dict], jobs: list[dict]) -> str:
    lines = ["| ids | shards | discovery s | driver peak MB | resume s (half done) | shards to read | committed files "
             "| summary s |", "|---|---|---|---|---|---|---|---|"]
    for r in driver:
        lines.append(f"| {r['ids']:,} | {r['shards']:,} | {r['discover_s']:.2f} | {r['driver_peak_mb']:.0f} "
                     f"| {r['resume_s']:.2f} | {r['shards_to_read']:,} | {r['committed_files']:,} "
                     f"| {r['summary_s']:.2f} |")
    lines += ["", "| items (stand-in sampler, 32x32) | batch size | items/s | wall s | files | rows per file | "
              "MB per file |", "|---|---|---|---|---|---|---|"]
    for r in jobs:
        lines.append(f"| {r['items']:,} | {r['batch_size']} | {r['items_per_s']:.0f} | {r['wall_s']:.1f} | "
                     f"{r['files']} | {r['rows_per_file']} | {r['file_mb_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from pipeline.output import ROWS_PER_FILE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="id counts for discovery/resume/summary")
    parser.add_argument("--run", default="10000", help="item counts of the stand-in jobs (items/s)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    driver, jobs = [], []
    for n in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="fcs-scale-") as work:
            driver.append(in_subprocess("measure_driver", Path(work), n=n, rows_per_file=ROWS_PER_FILE))
            print(json.dumps(driver[-1]), file=sys.stderr, flush=True)
    for n in map(int, filter(None, args.run.split(","))):
        with tempfile.TemporaryDirectory(prefix="fcs-scale-") as work:
            jobs.append(in_subprocess("run_job", Path(work), n=n, batch_size=args.batch_size,
                                      rows_per_file=ROWS_PER_FILE))
            print(json.dumps(jobs[-1]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps({"driver": driver, "jobs": jobs}, indent=2))
    md = markdown(driver, jobs)
    (args.out / "scale.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
