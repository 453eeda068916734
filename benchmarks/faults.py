"""What a lost worker node costs: a job on a cluster of separate ``ray start`` nodes, worker nodes
killed at random points, a replacement node started after each (as KubeRay or an autoscaler does).

    python benchmarks/faults.py                                   # 12,000 items, 3 SIGKILLs + 1 SIGTERM
    python benchmarks/faults.py --items 2000 --signals KILL       # quicker

The cluster: a head (2 CPUs: the driver's read, decode, encode and write tasks) and two worker nodes
with one fake GPU each, holding the sampler actors. The sampler is a stand-in (no model: each item's
output is its input) that takes ``--delay`` seconds per batch, as a GPU would, so that a kill lands
while an actor holds a batch; it journals every batch it starts, which counts the work redone. The
same job runs once without faults, then once with a worker node killed each time the committed rows
pass a random point. Prints a table and writes benchmarks/results/faults.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

from ray_nodes import LocalNodes  # noqa: E402 - this folder is not a package


def standin(delay_s: float, journal: str) -> type:
    """benchmarks/scale.py's stand-in sampler, ``delay_s`` per batch; each batch's ids are appended to
    ``journal/<pid>`` when it starts, and a ``.`` line when it ends."""
    import scale

    base = scale._standin()

    class SlowStandIn(base):
        def _sample(self, batch: dict, rows: list[dict], todo: list[int]) -> None:
            import os

            os.makedirs(journal, exist_ok=True)
            with open(f"{journal}/{os.getpid()}", "a") as log:
                log.write(" ".join(str(batch["id"][i]) for i in todo) + "\n")
            time.sleep(delay_s)
            super()._sample(batch, rows, todo)
            with open(f"{journal}/{os.getpid()}", "a") as log:
                log.write(".\n")

    return SlowStandIn


def job(work: str, items: int, batch_size: int, rows_per_file: int, delay_s: float, actors: int) -> dict:
    """One restore job on the cluster at $RAY_ADDRESS over ``items`` stand-in items (made once)."""
    import ray
    import scale

    import pipeline
    from pipeline.config import JobConfig

    root = Path(work)
    if not (root / "in").exists():
        scale.make_input(root / "in", items)
    ray.init(log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    summary = pipeline.run(JobConfig(input=str(root / "in"), output=str(root / "out"), model="tiny", actors=actors,
                                     batch_size=batch_size, rows_per_file=rows_per_file),
                           actor_cls=standin(delay_s, str(root / "journal")))
    return {k: summary[k] for k in ("ok", "error", "pending", "duplicates", "recovery", "this_run")}


def start_job(nodes: LocalNodes, work: Path, **kwargs) -> subprocess.Popen:
    """:func:`job` in a driver process of its own on ``nodes``; its last line is ``RESULT <json>``."""
    code = f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import faults; " \
           f"print('RESULT', json.dumps(faults.job({str(work)!r}, **{kwargs!r})))"
    env = nodes.env | {"RAY_ADDRESS": nodes.address, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=open(work / "driver.log", "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)


def result_of(driver: subprocess.Popen, work: Path) -> dict:
    log = (work / "driver.log").read_text()
    lines = [line for line in log.splitlines() if line.startswith("RESULT ")]
    if driver.returncode or not lines:
        raise RuntimeError(f"the job failed ({driver.returncode}):\n{log[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def committed_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("part-*.parquet")) if out.exists() else 0


def busy_pids(journal: Path) -> list[int]:
    """Sampler processes whose last journalled batch has not ended."""
    busy = []
    for log in journal.glob("*") if journal.exists() else []:
        lines = log.read_text().splitlines()
        if lines and lines[-1] != ".":
            busy.append(int(log.name))
    return busy


def journal_counts(journal: Path) -> tuple[int, int]:
    """(items sampled, distinct items sampled) over every batch started."""
    ids = [i for log in journal.glob("*") for line in log.read_text().splitlines() if line != "." for i in line.split()]
    return len(ids), len(set(ids))


def kill_a_busy_node(nodes: LocalNodes, journal: Path, sig: int, timeout_s: float = 60.0) -> dict | None:
    """Send ``sig`` to a worker node whose sampler holds a batch (waiting up to ``timeout_s`` for
    one); what was done, or None if no node was busy."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for pid in busy_pids(journal):
            node = nodes.node_of(pid)
            if node is not None and node.gpus:
                nodes.kill(node, sig)
                return {"node": node.name, "signal": signal.Signals(sig).name, "at": time.time()}
        time.sleep(0.05)
    return None


def drill(work: Path, items: int, signals: list[int], batch_size: int, rows_per_file: int, delay_s: float,
          health: tuple[int, int] | None, replace: bool, seed: int) -> dict:
    """One job with a fault at each random point; returns its result, the faults and the journal counts."""
    rng = random.Random(seed)
    points = sorted(rng.uniform(0.1, 0.85) for _ in signals)
    with LocalNodes(work / "nodes", health=health) as nodes:
        nodes.start_head()
        for _ in range(2):
            nodes.add_worker()
        driver = start_job(nodes, work, items=items, batch_size=batch_size, rows_per_file=rows_per_file,
                           delay_s=delay_s, actors=2)
        faults, started = [], time.time()
        for point, sig in zip(points, signals, strict=True):
            while driver.poll() is None and committed_rows(work / "out") < point * items:
                time.sleep(0.1)
            fault = kill_a_busy_node(nodes, work / "journal", sig) if driver.poll() is None else None
            if fault is None:
                break
            fault |= {"committed": committed_rows(work / "out"), "at": round(fault["at"] - started, 2)}
            faults.append(fault)
            if replace:
                nodes.add_worker()
        driver.wait()
        wall_s = time.time() - started
    sampled, distinct = journal_counts(work / "journal")
    return {"result": result_of(driver, work), "faults": faults, "wall_s": round(wall_s, 2), "sampled": sampled,
            "distinct": distinct}


def row(name: str, run: dict, items: int, base_wall: float | None) -> dict:
    result, faults = run["result"], run["faults"]
    extra = (run["wall_s"] - base_wall) / len(faults) if faults and base_wall else None
    return {"run": name, "items": items, "faults": len(faults), "signals": [f["signal"] for f in faults],
            "ok": result["ok"], "pending": result["pending"], "duplicates": result["duplicates"],
            "lost": items - result["ok"] - result["error"], "wall_s": run["wall_s"],
            "items_per_s": round(items / run["wall_s"], 1), "redone": run["sampled"] - run["distinct"],
            "redone_per_fault": round((run["sampled"] - run["distinct"]) / len(faults), 1) if faults else 0,
            "extra_s_per_fault": round(extra, 1) if extra is not None else None,
            "nodes_lost": result["recovery"]["nodes_lost"], "restarts": result["recovery"]["restarts"],
            "recover_s": result["recovery"]["recover_s"], "fault_log": faults}


def markdown(rows: list[dict]) -> str:
    lines = ["| run | items | faults | ok | lost | duplicated | wall s | items/s | items redone per fault "
             "| extra s per fault | nodes lost (summary) | graph restarts |", "|---" * 12 + "|"]
    for r in rows:
        extra = "" if r["extra_s_per_fault"] is None else f"{r['extra_s_per_fault']:.1f}"
        lines.append(f"| {r['run']} | {r['items']:,} | {r['faults']} | {r['ok']:,} | {r['lost']} | {r['duplicates']} "
                     f"| {r['wall_s']:.1f} | {r['items_per_s']:.1f} | {r['redone_per_fault']:.1f} | {extra} "
                     f"| {r['nodes_lost']} | {r['restarts']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12_000)
    parser.add_argument("--signals", default="KILL,KILL,KILL,TERM",
                        help="one fault per entry, in order: KILL (a lost node) or TERM (a drained node)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows-per-file", type=int, default=256)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per batch in the stand-in sampler")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still stops its nodes
    signals = [getattr(signal, f"SIG{s.strip().upper()}") for s in args.signals.split(",") if s.strip()]
    common = dict(items=args.items, batch_size=args.batch_size, rows_per_file=args.rows_per_file, delay_s=args.delay,
                  health=None, replace=True, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="fcs-faults-") as tmp:
        base = drill(Path(tmp) / "base", signals=[], **common)
        faulty = drill(Path(tmp) / "faults", signals=signals, **common)
    rows = [row("no faults", base, args.items, None), row("worker nodes killed", faulty, args.items, base["wall_s"])]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    table = markdown(rows)
    (RESULTS / "faults.md").write_text(table)
    print(table)
    for fault in rows[1]["fault_log"]:
        print(f"  {fault['signal']} {fault['node']} at {fault['at']:.1f} s, {fault['committed']:,} rows committed")
    faulty = rows[1]
    print(f"  nodes lost {faulty['nodes_lost']}, graph restarts {faulty['restarts']}, recover s {faulty['recover_s']}")


if __name__ == "__main__":
    main()
