"""A Ray cluster of separate ``ray start`` nodes on this machine, for fault drills.

Each node is its own process group (its own session), as a cloud VM is its own machine: SIGKILL of
one group is a lost spot instance (raylet, object store and every worker on it gone at once), SIGTERM
is a node told it will be preempted. The cluster runs with token authentication, as every cluster file
in infra/ does; ``env`` is what a driver process needs to join it. Nothing here touches another Ray
on this machine (no ``ray stop``: that would stop every Ray here).

    with LocalNodes(tmp) as nodes:
        nodes.start_head(num_cpus=2)
        a = nodes.add_worker(num_gpus=1)
        ...run a driver with env=nodes.env...
        nodes.kill(a, signal.SIGKILL)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
RAYLET_START_WAIT_S = "120"  # seconds `ray start` waits for the GCS to register its node (Ray's default: 30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parents() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process on this machine."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
            found[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return found


def processes_of(pgid: int) -> set[int]:
    """The processes of group ``pgid`` and all their descendants."""
    table = _parents()
    tree = {pid for pid, (_, group) in table.items() if group == pgid}
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


@dataclass
class Node:
    name: str
    pgid: int
    gpus: int


@dataclass
class LocalNodes:
    """``root``: where node logs go. ``environ``: more environment for the nodes and ``env``.
    ``health``: GCS node health checks (period ms, failures before a node is declared dead); Ray's
    defaults (3000, 5) unless given, e.g. (500, 3) to detect a lost node within ~2 s."""

    root: Path
    health: tuple[int, int] | None = None
    environ: dict[str, str] = field(default_factory=dict)  # more environment for every node and driver
    nodes: list[Node] = field(default_factory=list)
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    ray_tmp: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fcsn-", dir="/tmp"))  # short: sockets

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process on this cluster: the token, and this Python's bin on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
        env |= self.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_TMPDIR": self.ray_tmp,
                "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",
                # `ray start` gives up after 30 s if the GCS has not registered the node: on 2 busy cores
                # it can take longer (seen: worker-2 of the node-loss test)
                "RAY_raylet_start_wait_time_s": RAYLET_START_WAIT_S}
        if self.health:
            env |= {"RAY_health_check_period_ms": str(self.health[0]),
                    "RAY_health_check_failure_threshold": str(self.health[1]),
                    "RAY_health_check_initial_delay_ms": "0"}
        return env

    def _start(self, name: str, args: list[str], gpus: int) -> Node:
        with open(self.root / f"{name}.log", "w") as log:  # the child keeps its own copy of the handle
            started = subprocess.Popen([RAY, "start", "--node-ip-address=127.0.0.1", f"--temp-dir={self.ray_tmp}",
                                        "--disable-usage-stats", f"--num-gpus={gpus}", *args],
                                       env=self.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        node = Node(name, started.pid, gpus)
        self.nodes.append(node)  # before waiting: shutdown() stops a node whose start failed, too
        if started.wait(timeout=240):
            raise RuntimeError(f"`ray start` for {name} failed: {(self.root / f'{name}.log').read_text()[-3000:]}")
        return node

    def start_head(self, num_cpus: int = 2) -> Node:
        """A head that runs the driver's CPU stages; no GPU, no dashboard."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        ports = [f"--{flag}={free_port()}" for flag in ("ray-client-server-port", "metrics-export-port",
                                                        "runtime-env-agent-port", "dashboard-agent-listen-port")]
        return self._start("head", ["--head", f"--port={self.port}", f"--num-cpus={num_cpus}",
                                    "--include-dashboard=false", "--object-store-memory=300000000", *ports], 0)

    def add_worker(self, name: str | None = None, num_cpus: int = 1, num_gpus: int = 1) -> Node:
        """A worker node with ``num_gpus`` fake GPUs; returns once ``ray start`` has registered it."""
        name = name or f"worker-{len(self.nodes)}"
        ports = [f"--{flag}={free_port()}" for flag in ("metrics-export-port", "runtime-env-agent-port",
                                                        "dashboard-agent-listen-port")]
        return self._start(name, [f"--address={self.address}", f"--num-cpus={num_cpus}",
                                  "--object-store-memory=150000000", *ports], num_gpus)

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of ``node``: its group and its descendants (Ray starts each
        worker process in a group of its own)."""
        for pid in processes_of(node.pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def node_of(self, pid: int) -> Node | None:
        """The node whose process tree holds ``pid`` (None if none does, or it is gone)."""
        return next((n for n in self.nodes if pid in processes_of(n.pgid)), None)

    def node_of_ray_id(self, node_id: str) -> Node | None:
        """The node whose raylet has Ray node id ``node_id``."""
        for node in self.nodes:
            for pid in processes_of(node.pgid):
                with contextlib.suppress(OSError):
                    if f"--node_id={node_id}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                        return node
        return None

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            self.kill(node, signal.SIGTERM)
        time.sleep(1.0)
        for node in reversed(self.nodes):
            self.kill(node, signal.SIGKILL)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)

    def __enter__(self) -> LocalNodes:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
