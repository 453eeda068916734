"""`fcs doctor` on this machine (no GPU here): the console script itself, then its checks in-process."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from infra_helpers import REPO
from venv_tools import venv_tool

from jobs.cli import main


def _fcs() -> list[str]:
    return [venv_tool("fcs")]


def test_fcs_doctor_says_no_gpu_here(tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    # A private Ray temp dir: no cluster someone else started on this machine is "the last `ray start`".
    env = dict(os.environ, FCS_MODEL_CACHE=str(tmp_path), RAY_TMPDIR=str(tmp_path))
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([*_fcs(), "doctor", str(tmp_path)], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    gpu_line = next(line for line in done.stdout.splitlines() if line.startswith("GPU:"))
    assert "no GPU" in gpu_line and torch.__version__ in gpu_line, done.stdout
    assert "built-in photo (trained, shipped with fcs)" in done.stdout
    for section in ("versions:", "models:", "cache:", "ray:", "storage:", "memory:"):
        assert section in done.stdout
    # memory per family, counted and traced on the meta device (fcs.families.memory)
    assert "- sd15 (512², fp16): denoiser 859.5 M + VAE 83.7 M = 1.89 GB" in done.stdout
    assert "- flux-dev (1024², bf16): denoiser 11.90 B" in done.stdout and "free_text_encoders" in done.stdout
    assert f"torch {torch.__version__}" in done.stdout and "ray 2." in done.stdout
    assert "all checks passed" in done.stdout


def test_doctor_require_gpu_fails_without_one(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["doctor", "--address", "none", "--no-memory", "--require-gpu"]) == 1
    assert "PROBLEM:   no GPU" in capsys.readouterr().out


def test_doctor_checks_storage_and_reports_the_model_cache(s3_endpoint, model_dirs, tmp_path, monkeypatch,
                                                           capsys) -> None:
    import s3fs

    from pipeline.model_cache import stage_model

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir("doctor-bucket")
    fs.pipe("doctor-bucket/shards/a.parquet", b"x")
    monkeypatch.setenv("FCS_MODEL_CACHE", str(tmp_path / "cache"))
    fs.put(f"{model_dirs['tiny']}/", "doctor-bucket/models/tiny", recursive=True)
    stage_model("s3://doctor-bucket/models/tiny/", s3_endpoint)

    uris = ["s3://doctor-bucket/shards/", "s3://doctor-bucket/new-output/", "s3://no-such-bucket/x/"]
    code = main(["doctor", "--address", "none", "--no-memory", "--s3-endpoint", s3_endpoint, "--json", *uris])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and len(report["problems"]) == 1 and "no-such-bucket" in report["problems"][0]
    assert [s["ok"] for s in report["storage"]] == [True, True, False]
    cache = report["machine"]["model_cache"]
    assert cache["downloads"] == 1 and [m["source"] for m in cache["models"]] == ["s3://doctor-bucket/models/tiny/"]
    assert report["machine"]["gpus"] == [] or report["machine"]["gpus"][0]["name"]
    photo = next(b for b in report["builtin_models"] if b["name"] == "photo")
    assert photo["present"] and photo["kind"].startswith("trained")


def test_doctor_memory_gives_each_family_and_the_batch_that_fits_each_gpu(capsys) -> None:
    from fcs.families.memory import largest_batches
    from jobs.doctor import _memory_lines

    assert main(["doctor", "--address", "none", "--families", "sd15,flux-dev", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sd15, flux = report["memory"]["families"]
    assert sd15["params"]["denoiser"] == 859_520_964 and flux["params"]["text_encoder_2"] > 4.7e9
    assert all(v > 0 for v in flux["activations_per_item"].values())
    h100, l4 = largest_batches(flux, 79.2), largest_batches(flux, 22.0)
    assert h100["latent"] >= h100["decoder"] >= 1 and l4 == {"latent": 0, "decoder": 0}  # 33.7 GB of weights
    report["machine"]["gpus"] = [{"index": 0, "name": "NVIDIA L4", "memory_gb": 22.0, "capability": "8.9"}]
    lines = "\n".join(_memory_lines(report))
    assert "on NVIDIA L4 (22.0 GB): batch <= " in lines and "on NVIDIA L4 (22.0 GB): does not fit" in lines


def _report(ray_report: dict) -> dict:
    return {"storage": [], "builtin_models": [], "machine": {"gpus": [{"index": 0}]}, "ray": ray_report}


def test_doctor_flags_a_cluster_without_token_auth_and_a_refused_token() -> None:
    from jobs.doctor import AUTH_HELP, _auth_line, problems

    open_cluster = {"connected": True, "address": "10.0.0.1:6379", "nodes": [],
                    "auth": {"cluster": "disabled", "client": {"mode": "disabled", "token": None}}}
    found = problems(_report(open_cluster), require_gpu=False)
    assert len(found) == 1 and "10.0.0.1:6379 runs without token authentication" in found[0]
    assert "RAY_AUTH_MODE=token" in found[0] and AUTH_HELP in found[0]
    page, section = re.fullmatch(r"(\S+), section '(.+)'", AUTH_HELP).groups()
    assert f"\n## {section}\n" in (REPO / page).read_text(), f"{AUTH_HELP} points nowhere"
    assert "requires NO token" in _auth_line(open_cluster["auth"])

    secured = dict(open_cluster, auth={"cluster": "token", "client": {"mode": "token", "token": "$RAY_AUTH_TOKEN"}})
    assert problems(_report(secured), require_gpu=False) == []
    assert _auth_line(secured["auth"]) == ("the cluster requires a token; this process sends the token from "
                                           "$RAY_AUTH_TOKEN")

    refused = {"connected": False, "address": "10.0.0.1:6379", "reason": "Failed to connect",
               "auth": {"cluster": "token", "client": {"mode": "disabled", "token": "~/.ray/auth_token"}}}
    found = problems(_report(refused), require_gpu=False)
    assert len(found) == 1 and "requires a token and refused this process" in found[0]
    assert "sends none (RAY_AUTH_MODE=disabled, token: ~/.ray/auth_token)" in found[0], found[0]
    assert problems(_report({"connected": False, "reason": "no cluster"}), require_gpu=False) == []


def test_client_auth_follows_rays_token_precedence(tmp_path, monkeypatch) -> None:
    from jobs.doctor import client_auth, cluster_auth

    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert client_auth() == {"mode": "disabled", "token": None}
    assert cluster_auth(None, client_auth()) == "disabled", "a client that sent no token and got in"

    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("default")
    monkeypatch.setenv("RAY_AUTH_MODE", "TOKEN")
    assert client_auth() == {"mode": "token", "token": "~/.ray/auth_token"}
    assert cluster_auth(None, client_auth()) == "unknown", "it sent a token: no dashboard, no way to tell"

    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(empty))  # the path wins over the default file, even empty
    assert client_auth()["token"] is None
    empty.write_text("t")
    assert client_auth()["token"] == f"$RAY_AUTH_TOKEN_PATH ({empty})"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-value")
    assert client_auth()["token"] == "$RAY_AUTH_TOKEN", "the variable wins, and the value is never reported"
