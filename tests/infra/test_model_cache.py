"""pipeline.model_cache without Ray: what each kind of source resolves to, one download under
concurrency, clear errors. The once-per-node check across Ray nodes is in test_cluster.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline import model_cache
from pipeline.model_cache import cached_models, downloads, stage_model


@pytest.fixture
def s3_model(s3_endpoint: str, model_dirs: dict[str, Path], request) -> str:
    """The session's tiny SD checkpoint uploaded to a fresh prefix, plus a .bin that must be skipped."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    if not fs.exists("unit-models"):
        fs.mkdir("unit-models")
    prefix = f"unit-models/{request.node.name}"
    fs.put(f"{model_dirs['tiny']}/", prefix, recursive=True)
    fs.pipe(f"{prefix}/unet/diffusion_pytorch_model.bin", b"not read by from_pretrained(use_safetensors=True)")
    return f"s3://{prefix}/"


def test_concurrent_stagers_download_once_and_share_the_copy(s3_model, s3_endpoint, tmp_path, monkeypatch) -> None:
    fetches = []
    real_fetch = model_cache._fetch_uri

    def slow_fetch(*args):
        fetches.append(args[0])
        threading.Event().wait(0.3)  # keep the lock held while the others arrive
        real_fetch(*args)

    monkeypatch.setattr(model_cache, "_fetch_uri", slow_fetch)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(stage_model(s3_model, s3_endpoint, tmp_path)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(paths) == 4 and len(set(paths)) == 1 and fetches == [s3_model]
    assert [d["source"] for d in downloads(tmp_path)] == [s3_model]
    local = Path(paths[0])
    assert (local / "model_index.json").exists() and (local / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert not list(local.rglob("*.bin")), "weights from_pretrained never reads are not downloaded"
    assert not list(tmp_path.glob(".*partial*")), "no partial download left behind"
    assert [m["source"] for m in cached_models(tmp_path)] == [s3_model]
    assert stage_model(s3_model, s3_endpoint, tmp_path) == paths[0] and len(downloads(tmp_path)) == 1

    import fcs

    assert fcs.load_denoiser(paths[0], device="cpu", dtype="float32").unet is not None


def test_cache_dir_comes_from_fcs_model_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FCS_MODEL_CACHE", str(tmp_path / "node-cache"))
    assert model_cache.cache_root() == tmp_path / "node-cache"
    monkeypatch.delenv("FCS_MODEL_CACHE")
    monkeypatch.setenv("FCS_CACHE", str(tmp_path / "fcs"))
    assert model_cache.cache_root() == tmp_path / "fcs" / "models"


def test_local_folders_are_used_in_place(model_dirs, tmp_path) -> None:
    folder = model_dirs["tiny"]
    assert stage_model(str(folder), cache_dir=tmp_path) == str(folder.resolve())
    assert stage_model(f"file://{folder}", cache_dir=tmp_path) == str(folder.resolve())
    assert downloads(tmp_path) == []


def test_builtin_names_resolve_through_fcs(fcs_cache, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    path = Path(stage_model("tiny", cache_dir=tmp_path))
    assert (path / "model_index.json").exists() and path.parent == fcs_cache


def test_concurrent_stagers_of_a_builtin_build_it_once(monkeypatch, tmp_path) -> None:
    """The built-ins are written by fcs under the same lock-and-rename as downloads: one build, logged once."""
    from fcs.loading import BUILT

    build = BUILT["tiny-pixel"]

    def slow_build(path):
        threading.Event().wait(0.3)  # keep the lock held while the others arrive
        return build(path)

    monkeypatch.setitem(BUILT, "tiny-pixel", slow_build)
    monkeypatch.setenv("FCS_CACHE", str(tmp_path / "fcs"))
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(stage_model("tiny-pixel", cache_dir=tmp_path / "node")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(paths) == 3 and set(paths) == {str(tmp_path / "fcs" / "tiny-pixel")}
    assert (Path(paths[0]) / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert [(d["source"], d["what"]) for d in downloads(tmp_path / "node")] == [("tiny-pixel", "build")]
    assert not list((tmp_path / "fcs").glob(".*partial*"))


def test_hub_ids_are_snapshot_downloaded_once(monkeypatch, model_dirs, tmp_path) -> None:
    import shutil

    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id, local_dir, ignore_patterns):
        calls.append((repo_id, tuple(ignore_patterns)))
        shutil.copytree(model_dirs["tiny"], local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    first = stage_model("some-org/some-model", cache_dir=tmp_path)
    assert stage_model("some-org/some-model", cache_dir=tmp_path) == first
    assert len(calls) == 1 and "*.bin" in calls[0][1]
    assert (Path(first) / "model_index.json").exists()


def test_clear_errors_for_missing_paths_and_non_models(s3_endpoint, tmp_path) -> None:
    import s3fs

    with pytest.raises(ValueError, match="no such folder on this node"):
        stage_model("/no/such/model", cache_dir=tmp_path)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir("not-a-model")
    fs.pipe("not-a-model/x/readme.txt", b"hello")
    with pytest.raises(ValueError, match="no model_index.json"):
        stage_model("s3://not-a-model/x/", s3_endpoint, tmp_path)
    assert downloads(tmp_path) == [] and not list(tmp_path.glob(".*partial*"))
