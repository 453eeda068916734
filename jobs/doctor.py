"""``fcs doctor``: what this environment offers a job, checked before a long run.

    fcs doctor                                   this machine, and the Ray cluster if one is running
    fcs doctor s3://bucket/shards/ s3://bucket/models/sd15/ --s3-endpoint http://minio:9000
    ray job submit --address http://HEAD:8265 -- fcs doctor --require-gpu     # as the cluster sees it

Reports versions (python, fcs, torch and its CUDA build, diffusers, ray, pyarrow, s3fs), the GPUs torch
sees here (or says plainly that there is no GPU), the Ray cluster's nodes and resources with a
probe of torch's GPUs on every node, whether that cluster requires Ray's token authentication and
whether this process has a token, whether each given URI is reachable, the model cache, and the
memory each model family needs (weights, text encoders, activations per item; traced on the meta device
by :mod:`fcs.families.memory`) with the largest batch that fits each GPU found.
Exit code 0 when every check passes, 1 when a URI is unreachable, a GPU node's torch sees no GPU,
``--require-gpu`` finds none, the cluster runs without token authentication (anyone who reaches it
can run code there), or it refused this process for want of its token.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import sys
import urllib.request
from pathlib import Path

PACKAGES = ("fcs", "torch", "diffusers", "transformers", "ray", "pyarrow", "s3fs", "fsspec")

# Ray's token authentication (Ray >= 2.52): the mode variable every node and client reads, and where a
# client finds the token, highest precedence first (docs.ray.io, ray-security/token-auth).
AUTH_MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
AUTH_HELP = "docs/cluster.md, section 'Token authentication'"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fcs doctor", description=__doc__.split("\n\n")[0].strip("`"))
    p.add_argument("uris", nargs="*", help="input/output/model locations to check (paths or s3://, gs:// URIs)")
    p.add_argument("--address", default=None,
                   help="Ray cluster: host:port, 'auto' (any running here), or 'none'; default: the one a job "
                        "would join ($RAY_ADDRESS, else the last `ray start` on this machine)")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--model-cache", help="model cache folder (default $FCS_MODEL_CACHE, else $FCS_CACHE/models)")
    p.add_argument("--require-gpu", action="store_true", help="fail (exit 1) when no GPU is found")
    p.add_argument("--families", default=None,
                   help="model families for the memory section, comma-separated (default: all of "
                        "fcs.families.memory.ARCHITECTURES)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory section (it takes a few seconds)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def memory_report(families: list[str] | None) -> dict:
    """Weights and per-item activations of each family (:func:`fcs.families.memory.memory_report`)."""
    from fcs.families.memory import memory_report as report

    try:
        return report(families)
    except Exception as exc:  # noqa: BLE001 - an unknown diffusers layout must not hide the other checks
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def gpu_report() -> dict:
    """The CUDA devices torch sees in this process; ``gpus`` is empty when there is none."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                         "capability": f"{props.major}.{props.minor}"})
    return {"host": socket.gethostname(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
            "gpus": gpus, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "nvidia_smi": shutil.which("nvidia-smi") is not None}


def node_report(cache_dir: str | None) -> dict:
    """What one node offers: its GPUs as torch sees them and its model cache."""
    from pipeline.model_cache import cache_root, cached_models, downloads

    root = cache_root(cache_dir)
    free = shutil.disk_usage(root if root.exists() else root.anchor or "/").free
    cache = {"path": str(root), "free_gb": round(free / 2**30, 1), "models": cached_models(root),
             "downloads": len(downloads(root))}
    return gpu_report() | {"model_cache": cache}


def client_auth() -> dict:
    """This process's token settings as Ray reads them: ``mode`` (``token`` sends a token) and ``token``,
    where the token comes from (never the token itself), None when there is none."""
    path = os.environ.get(TOKEN_PATH_VAR)
    if os.environ.get(TOKEN_VAR):
        source = f"${TOKEN_VAR}"
    elif path:
        source = f"${TOKEN_PATH_VAR} ({path})" if _non_empty(Path(path)) else None
    else:
        source = str(DEFAULT_TOKEN_FILE) if _non_empty(DEFAULT_TOKEN_FILE.expanduser()) else None
    return {"mode": os.environ.get(AUTH_MODE_VAR, "disabled").lower(), "token": source}


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def cluster_auth(dashboard_url: str | None, client: dict) -> str:
    """``token``, ``disabled`` or ``unknown``: the dashboard says which (a public endpoint); without one,
    a client that sent no token and got in proves the cluster does not require one."""
    if dashboard_url:
        url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        try:
            with urllib.request.urlopen(f"{url}/api/authentication_mode", timeout=10) as answer:
                return json.load(answer)["authentication_mode"]
        except (OSError, ValueError, KeyError):
            pass
    return "disabled" if client["mode"] != "token" else "unknown"


def _refused_for_auth(exc: BaseException) -> bool:
    """Whether ``ray.init`` failed because the cluster rejected this process's (missing) token."""
    from ray.exceptions import AuthenticationError

    while exc is not None:
        if isinstance(exc, AuthenticationError) or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def connect(address: str | None) -> dict:
    """``ray.init`` to a running cluster (never start one): ``connected``, and ``auth`` (whether the cluster
    requires a token, what this process sends) when connected or refused for want of the token. Connected,
    the caller calls ``ray.shutdown()``."""
    import ray

    if address == "none":
        return {"connected": False, "reason": "skipped (--address none)"}
    address = address or os.environ.get("RAY_ADDRESS") or _latest_local_cluster()
    if not address:
        return {"connected": False, "reason": "no $RAY_ADDRESS and no cluster started here with `ray start`"}
    try:
        context = ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        # Read after ray.init: it turns token mode on by itself when it finds a token for a local cluster.
        auth = {"cluster": "token", "client": client_auth()} if _refused_for_auth(exc) else None
        return {"connected": False, "address": address, "reason": str(exc).splitlines()[0], "auth": auth}
    client = client_auth()
    return {"connected": True, "address": address, "auth": {"cluster": cluster_auth(context.dashboard_url, client),
                                                            "client": client}}


def ray_report(address: str | None, cache_dir: str | None, timeout_s: float = 60.0) -> dict:
    """Connect (:func:`connect`) and probe every alive node of the cluster."""
    import ray

    report = connect(address)
    if not report["connected"]:
        return report
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        probe = ray.remote(num_cpus=0)(node_report)
        refs = {}
        for n in nodes:
            strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            # Ray hides GPUs from tasks that reserve none; this lets the probe see the node's GPUs.
            env = {"env_vars": {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}}
            refs[n["NodeID"]] = probe.options(scheduling_strategy=strategy, runtime_env=env).remote(cache_dir)
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        report |= {"resources": ray.cluster_resources(), "nodes": []}
        for n in nodes:
            ref = refs[n["NodeID"]]
            entry = {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"],
                     "resources": {k: v for k, v in n["Resources"].items() if not k.startswith("node:")}}
            entry["probe"] = ray.get(ref) if ref in ready else {"error": f"no answer within {timeout_s:.0f}s"}
            report["nodes"].append(entry)
        return report
    finally:
        ray.shutdown()


def _latest_local_cluster() -> str | None:
    """The cluster a plain ``ray.init()`` (what a job calls) would join: the last ``ray start`` here."""
    try:
        from ray._private.utils import read_ray_address

        return read_ray_address()
    except (ImportError, OSError):
        return None


def storage_report(uri: str, endpoint: str | None) -> dict:
    """Whether ``uri`` (or, for a location not written yet, its bucket/parent) can be listed."""
    from pipeline.storage import Storage

    try:
        storage = Storage.from_uri(uri, endpoint)
        fs, root = storage.fs, storage.root
        if fs.exists(root):
            kind = "folder" if fs.isdir(root) else "file"
            count = len(fs.ls(root)) if kind == "folder" else 1
            return {"uri": uri, "ok": True, "detail": f"{kind}, {count} entr{'y' if count == 1 else 'ies'}"}
        parent = root.split("/")[0] if storage.protocol != "file" else os.path.dirname(root)
        if fs.exists(parent):
            return {"uri": uri, "ok": True, "detail": f"not there yet; {parent!r} is reachable (fine for --output)"}
        return {"uri": uri, "ok": False, "detail": f"neither it nor {parent!r} exists"}
    except Exception as exc:  # noqa: BLE001 - any backend failure is the finding
        return {"uri": uri, "ok": False,
                "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def collect(args: argparse.Namespace) -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    from fcs.loading import builtin_models

    families = args.families.split(",") if args.families else None
    return {"versions": versions, "builtin_models": builtin_models(), "machine": node_report(args.model_cache),
            "ray": ray_report(args.address, args.model_cache),
            "storage": [storage_report(uri, args.s3_endpoint) for uri in args.uris],
            "memory": None if args.no_memory else memory_report(families)}


def problems(report: dict, require_gpu: bool) -> list[str]:
    found = [f"storage {s['uri']}: {s['detail']}" for s in report["storage"] if not s["ok"]]
    found += [f"built-in model {b['name']!r} is missing from {b['path']} (a broken install: reinstall fcs)"
              for b in report["builtin_models"] if b["kind"].startswith("trained") and not b["present"]]
    any_gpu = bool(report["machine"]["gpus"])
    for node in report["ray"].get("nodes", []):
        gpus = node["resources"].get("GPU", 0)
        seen = node["probe"].get("gpus")
        any_gpu = any_gpu or bool(seen)
        if gpus and seen is not None and len(seen) < gpus:
            found.append(f"node {node['ip']} ({node['node_id'][:8]}): Ray advertises {gpus:g} GPU(s) but torch there "
                         f"sees {len(seen)} (CPU-only torch, driver or container runtime missing?)")
        if "error" in node["probe"]:
            found.append(f"node {node['ip']} ({node['node_id'][:8]}): probe failed: {node['probe']['error']}")
    if require_gpu and not any_gpu:
        found.append("no GPU: --require-gpu was given and neither this machine nor any Ray node has one")
    return found + auth_problems(report["ray"])


def auth_problems(ray_r: dict) -> list[str]:
    """A cluster without token authentication, or one that refused this process's (missing) token."""
    auth, address = ray_r.get("auth"), ray_r.get("address")
    if not auth:
        return []
    if not ray_r["connected"]:
        return [f"Ray cluster {address} requires a token and refused this process, which {_sent(auth['client'])}: "
                f"set {AUTH_MODE_VAR}=token and {TOKEN_VAR} (or {TOKEN_PATH_VAR}) to the cluster's token ({AUTH_HELP})"]
    if auth["cluster"] == "disabled":
        return [f"Ray cluster {address} runs without token authentication: anyone who reaches its GCS or "
                f"dashboard can run code on it. Start every node with {AUTH_MODE_VAR}=token and a token from a "
                f"secret store, as the files in infra/ do ({AUTH_HELP})"]
    return []


def _sent(client: dict) -> str:
    """What this process sends: Ray sends a token only in token mode."""
    if client["mode"] == "token" and client["token"]:
        return f"sends the token from {client['token']}"
    return f"sends none ({AUTH_MODE_VAR}={client['mode']}, token: {client['token'] or 'none found'})"


def _gpu_line(r: dict) -> str:
    if r["gpus"]:
        return ", ".join(f"cuda:{g['index']} {g['name']} {g['memory_gb']} GB" for g in r["gpus"])
    build = f"a CUDA {r['cuda_build']} build" if r["cuda_build"] else "a CPU-only build"
    return (f"no GPU - torch {r['torch']} ({build}) sees no CUDA device on {r['host']}; "
            "the sampler would run on CPU, hundreds of times slower (docs/scaling.md)")


def format_report(report: dict, issues: list[str]) -> str:
    m, ray_r = report["machine"], report["ray"]
    lines = ["versions:  " + "  ".join(f"{k} {v or '-'}" for k, v in report["versions"].items()),
             f"GPU:       {_gpu_line(m)}",
             "models:    built-in " + "; ".join(f"{b['name']} ({b['kind']}{'' if b['present'] else ', not there yet'})"
                                              for b in report["builtin_models"]),
             f"cache:     {m['model_cache']['path']} ({len(m['model_cache']['models'])} model(s), "
             f"{m['model_cache']['downloads']} download(s) logged, {m['model_cache']['free_gb']} GB free)"]
    lines += [f"           - {x['source']} -> {x['path']} ({x['bytes'] / 2**20:.1f} MB)"
              for x in m["model_cache"]["models"]]
    if ray_r.get("auth") and not ray_r["connected"]:
        lines.append(f"ray:       {ray_r['address']} refused this process ({ray_r['reason']})")
    elif not ray_r["connected"]:
        lines.append(f"ray:       no running cluster ({ray_r['reason']}); a job starts a local one on this machine")
    else:
        res = ray_r["resources"]
        lines.append(f"ray:       {ray_r['address']}: {len(ray_r['nodes'])} node(s), CPU {res.get('CPU', 0):g}, "
                     f"GPU {res.get('GPU', 0):g}, object store {res.get('object_store_memory', 0) / 2**30:.1f} GB")
        for node in ray_r["nodes"]:
            p = node["probe"]
            seen = _gpu_line(p) if "gpus" in p else p["error"]
            lines.append(f"           - {node['ip']} {node['node_id'][:8]} CPU {node['resources'].get('CPU', 0):g} "
                         f"GPU {node['resources'].get('GPU', 0):g}; torch: {seen}")
    if ray_r.get("auth"):
        lines.append(f"auth:      {_auth_line(ray_r['auth'])}")
    for s in report["storage"]:
        lines.append(f"storage:   {'ok  ' if s['ok'] else 'FAIL'} {s['uri']}: {s['detail']}")
    if report.get("memory") is not None:
        lines += _memory_lines(report)
    lines += [f"PROBLEM:   {x}" for x in issues] or ["all checks passed"]
    return "\n".join(lines)


def _auth_line(auth: dict) -> str:
    cluster = {"token": "the cluster requires a token", "disabled": "the cluster requires NO token (open to anyone)",
               "unknown": "the cluster accepted this token (whether it requires one: unknown, no dashboard)"}
    return f"{cluster.get(auth['cluster'], auth['cluster'])}; this process {_sent(auth['client'])}"


def _gpus_seen(report: dict) -> list[dict]:
    """Each distinct GPU model (name, memory) on this machine or any Ray node."""
    seen: dict[tuple, dict] = {}
    probes = [report["machine"], *(n["probe"] for n in report["ray"].get("nodes", []))]
    for gpu in (g for p in probes for g in p.get("gpus") or []):
        seen.setdefault((gpu["name"], gpu["memory_gb"]), gpu)
    return list(seen.values())


def _memory_lines(report: dict) -> list[str]:
    from fcs.families.memory import largest_batches

    mem = report["memory"]
    if "error" in mem:
        return [f"memory:    could not be traced here ({mem['error']})"]
    gb = 1e9

    def params(n: int) -> str:
        return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"

    lines = ["memory:    per family at its native size, GB = 10^9 bytes (traced on the meta device: "
             "python -m fcs.families.memory; docs/scaling.md)"]
    gpus = _gpus_seen(report)
    for f in mem["families"]:
        p, b, a = f["params"], f["bytes"], f["activations_per_item"]
        text = sum(v for k, v in p.items() if k.startswith("text_encoder"))
        lines.append(
            f"           - {f['family']} ({f['side']}², {f['dtype']}): denoiser {params(p['denoiser'])} + VAE "
            f"{params(p['vae'])} = {(b['denoiser'] + b['vae']) / gb:.2f} GB, text encoders {params(text)} = "
            f"{b['text_encoders'] / gb:.2f} GB (free_text_encoders frees them); per item: forward "
            f"{a['forward'] / gb:.2f}, exact JVP {a['jvp'] / gb:.2f} (blockwise attention; math attention "
            f"{a['jvp_math'] / gb:.2f}), VAE decode {a['decode'] / gb:.2f}, "
            f"decoder backward {a['decoder_saved'] / gb:.2f}")
        for gpu in gpus:
            fit = largest_batches(f, gpu["memory_gb"])
            lines.append(f"             on {gpu['name']} ({gpu['memory_gb']} GB): batch <= {fit['latent']} for "
                         f"restore/outpaint/layers, <= {fit['decoder']} for superres (decoder)/style"
                         if fit["latent"] else f"             on {gpu['name']} ({gpu['memory_gb']} GB): does not fit")
    if not gpus:
        lines.append("           (no GPU seen: the largest batch per GPU is printed where one is)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report = collect(args)
    issues = problems(report, args.require_gpu)
    print(json.dumps(report | {"problems": issues}, indent=2, default=str) if args.json
          else format_report(report, issues))
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
