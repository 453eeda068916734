"""Model staging: every node fetches a model once into a node-local cache, whatever the actor count.

A sampler actor calls :func:`stage_model` before :func:`fcs.load_denoiser`; the source may be

- an object-storage URI (``s3://bucket/models/sd15/``, ``gs://...``, any fsspec protocol) holding a
  diffusers folder: downloaded into the cache (only the files ``from_pretrained`` reads);
- a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``): snapshot-downloaded into the cache,
  so that the hub sees one request per node instead of one per actor;
- a local folder (or ``file://`` URI), e.g. a shared volume: used in place;
- a built-in name (``tiny``, ...): written once into ``$FCS_CACHE`` by :func:`fcs.loading.write_builtin`.

Cache layout (``$FCS_MODEL_CACHE``, default ``$FCS_CACHE/models``; mount a node-local disk there)::

    s3--bucket--models--sd15--<hash>/   a complete copy, published by one atomic rename
    s3--bucket--models--sd15--<hash>.lock
    downloads.jsonl                     one line per download: what, where, bytes, seconds, node

Actors on one node serialise on the ``.lock`` file (``filelock``, released by the OS if a process
dies); the first downloads into a private ``.partial`` folder and renames it into place, the others
find the folder and load it (:func:`fcs.publish.publish_once`, which writes the built-ins too). A URI
is taken as immutable: publish a new model under a new prefix.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

CACHE_ENV = "FCS_MODEL_CACHE"
LOG_NAME = "downloads.jsonl"
MANIFEST = ".fcs-staged.json"
# Weights that from_pretrained(use_safetensors=True) never reads: not worth the bytes.
SKIP = ("*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.gguf")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The node-local cache: ``cache_dir``, else ``$FCS_MODEL_CACHE``, else ``$FCS_CACHE/models``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from fcs.loading import cache_dir as fcs_cache

    return fcs_cache() / "models"


def stage_model(
    source: str, endpoint: str | None = None, cache_dir: str | Path | None = None, timeout_s: float = 3600.0
) -> str:
    """Return a local folder holding ``source`` for :func:`fcs.load_denoiser`, fetching it at most
    once per cache (i.e. per node).

    Args:
        source: object-storage URI, hub id, local folder, ``file://`` URI, or built-in name.
        endpoint: S3-compatible endpoint for ``s3://`` (default ``$AWS_ENDPOINT_URL``, else AWS).
        cache_dir: overrides :func:`cache_root`. timeout_s: how long to wait for another process's
            download of the same model before failing.

    Raises:
        ValueError: a path that does not exist, or a URI without a diffusers model in it.
        OSError: the source cannot be reached (the message says which and why).
    """
    from fcs.loading import BUILTIN
    from fcs.publish import publish_once

    source = str(source).strip()
    kind = _kind(source)
    if kind == "local":
        path = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
        if not path.is_dir():
            raise ValueError(
                f"model {source!r}: no such folder on this node ({socket.gethostname()}); give a diffusers folder "
                "present on every node, an s3:// or gs:// URI, a hub id (org/name), or one of " + ", ".join(BUILTIN)
            )
        return str(path.resolve())
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    if kind == "builtin":
        return _build_builtin(source, root)
    final = root / _key(source, endpoint)
    started = time.time()
    if publish_once(final, lambda partial: _download(source, kind, endpoint, partial), MANIFEST, timeout_s):
        manifest = json.loads((final / MANIFEST).read_text())
        _record(root, source, "download", str(final), started, (manifest["files"], manifest["bytes"]))
    return str(final)


def downloads(cache_dir: str | Path | None = None) -> list[dict]:
    """The download log of a cache: one dict per download or build (oldest first)."""
    log = cache_root(cache_dir) / LOG_NAME
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def cached_models(cache_dir: str | Path | None = None) -> list[dict]:
    """The models present in a cache: source, path, files, bytes, staged_at."""
    root = cache_root(cache_dir)
    found = []
    for manifest in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        if manifest.parent.name.startswith("."):  # a download in progress
            continue
        entry = json.loads(manifest.read_text())
        found.append({k: entry[k] for k in ("source", "files", "bytes", "staged_at")} | {"path": str(manifest.parent)})
    return found


def model_family(source: str, endpoint: str | None = None) -> str | None:
    """The pipeline class ``model_index.json`` names for ``source`` (the model family, as the summary
    and report show it), "oracle" for the analytic built-ins, None where it cannot be read without a
    download (a hub id). Read errors give None: the job itself reports a model that does not load."""
    from fcs.loading import ORACLES, resolve_model

    kind = _kind(source)
    try:
        if source in ORACLES:
            return "oracle"
        if kind == "hub":
            return None
        if kind == "uri":
            from pipeline.storage import Storage

            storage = Storage.from_uri(source, endpoint)
            text = storage.read_bytes(storage.path("model_index.json"))
        else:
            folder = resolve_model(source) if kind == "builtin" else source.removeprefix("file://")
            text = (Path(folder) / "model_index.json").read_bytes()
        return json.loads(text).get("_class_name")
    except (OSError, ValueError):
        return None


def _kind(source: str) -> str:
    from fcs.loading import BUILTIN

    if source in BUILTIN:
        return "builtin"
    if source.startswith("file://") or Path(source).expanduser().exists():
        return "local"
    if "://" in source:
        return "uri"
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return "hub"
    return "local"  # a path that is not there: stage_model says so


def _key(source: str, endpoint: str | None) -> str:
    """A readable, collision-safe folder name: ``s3--bucket--models--sd15--1a2b3c4d``."""
    readable = source.replace("://", "--").strip("/").replace("/", "--")
    digest = hashlib.sha256(f"{source.rstrip('/')}|{endpoint or ''}".encode()).hexdigest()[:8]
    return f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in readable)[:150]}--{digest}"


def _build_builtin(name: str, root: Path) -> str:
    """A built-in's folder, written once by fcs (under fcs's own lock); the build is logged here."""
    from fcs.loading import BUILT, resolve_model, write_builtin

    started = time.time()
    built = name in BUILT and write_builtin(name)  # shipped models and oracles are never built
    path = resolve_model(name)
    if built:
        _record(root, name, "build", path, started, _tree_size(Path(path)))
    return path


def _download(source: str, kind: str, endpoint: str | None, partial: Path) -> None:
    """Fetch ``source`` into the private folder ``partial`` (published by :func:`fcs.publish.publish_once`)
    and write its manifest last."""
    (_fetch_uri if kind == "uri" else _fetch_hub)(source, endpoint, partial)
    files, size = _tree_size(partial)
    manifest = {"source": source, "endpoint": endpoint, "files": files, "bytes": size, "staged_at": time.time()}
    (partial / MANIFEST).write_text(json.dumps(manifest))


def _fetch_uri(source: str, endpoint: str | None, dest: Path) -> None:
    from pipeline.storage import Storage

    storage = Storage.from_uri(source, endpoint)
    try:
        listing = storage.fs.find(storage.root)
    except Exception as exc:  # noqa: BLE001 - any backend error becomes one clear line
        raise OSError(f"model {source!r}: cannot list it ({type(exc).__name__}: {exc})") from exc
    relative = {storage.relative(p): p for p in listing}
    wanted = sorted(r for r in relative if not any(fnmatch.fnmatch(Path(r).name, pat) for pat in SKIP))
    if "model_index.json" not in wanted:
        raise ValueError(
            f"model {source!r}: no model_index.json among its {len(relative)} file(s); "
            "upload a diffusers folder (e.g. DiffusionPipeline.save_pretrained) to that prefix"
        )
    local = [str(dest / r) for r in wanted]
    for path in local:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    storage.fs.get([relative[r] for r in wanted], local)


def _fetch_hub(source: str, endpoint: str | None, dest: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(source, local_dir=dest, ignore_patterns=list(SKIP))
    except Exception as exc:  # noqa: BLE001
        raise OSError(
            f"model {source!r}: hub download failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "pre-stage it to object storage or a shared folder and pass that instead"
        ) from exc
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # huggingface_hub's download metadata


def _tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _record(root: Path, source: str, what: str, path: str, started: float, size: tuple[int, int]) -> None:
    """Append one line to the cache's download log (one short append: whole lines across processes)."""
    entry = {"source": source, "what": what, "path": path, "files": size[0], "bytes": size[1],
             "seconds": round(time.time() - started, 3), "host": socket.gethostname(), "node": _node_id(),
             "pid": os.getpid(), "at": time.time()}
    with open(root / LOG_NAME, "a") as log:
        log.write(json.dumps(entry) + "\n")


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None
