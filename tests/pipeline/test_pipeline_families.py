"""Issue 22, acceptance 3: every model family through the jobs. Each family's tiny model runs a real
Ray job over S3 (moto) end to end, and every task runs on every family through the sampler actor (the
same class the job uses, called without Ray)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import s3fs
from PIL import Image
from pipeline_testdata import FAST, assert_exactly_once, good_rows, hole, photo, png, read_rows

import pipeline
from fcs import SamplerConfig
from fcs.loading import BUILT
from pipeline.actor import TaskActor
from pipeline.config import JobConfig
from pipeline.stages import prepare
from pipeline.storage import Storage
from pipeline.tasks import TASKS

FAMILY_MODELS = ("tiny-sdxl", "tiny-sd3", "tiny-flux")
SMALL = {"restore": {}, "superres": {"scale": 2}, "outpaint": {"pad": 8}, "layers": {"rounds": 1, "samples": 2},
         "style": {"clip_model": "tiny-clip", "size": [32, 32]}}


def _build(name: str, folder):
    return BUILT[name](folder / name)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: _build(name, root) for name in FAMILY_MODELS}


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_family_job_over_s3(name, family_dirs, ray_address, s3_endpoint, bucket, monkeypatch):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.put(str(family_dirs[name]) + "/", f"{bucket}/models/{name}/", recursive=True)
    rows = good_rows(4)
    fs.pipe_file(f"{bucket}/in/shard-0.parquet", _parquet(rows))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    model = f"s3://{bucket}/models/{name}"
    cfg = JobConfig(input=f"s3://{bucket}/in/", output=f"s3://{bucket}/out", model=model, batch_size=2,
                    sampler=FAST, preset="paper")
    summary = pipeline.run(cfg)
    assert (summary["ok"], summary["error"], summary["pending"], summary["duplicates"]) == (4, 0, 0, 0)
    assert summary["family"] == {"tiny-sdxl": "StableDiffusionXLPipeline", "tiny-sd3": "StableDiffusion3Pipeline",
                                 "tiny-flux": "FluxPipeline"}[name]
    table = read_rows(f"s3://{bucket}/out", columns=None, endpoint=s3_endpoint)
    assert_exactly_once(table, [r["id"] for r in rows])
    for row in table.to_pylist():
        assert row["status"] == "ok" and row["model"] == model and row["nfe"] == 2 * (1 + 2)
        out = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
        assert out.shape == (64, 64, 3)
        original = photo(64, 64, int(row["id"][-3:]))
        assert np.array_equal(out[hole() == 0], original[hole() == 0])  # kept pixels survive


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def test_model_family_names_every_kind_of_source(family_dirs, fcs_cache, monkeypatch):
    from pipeline.model_cache import model_family

    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    assert model_family(str(family_dirs["tiny-flux"])) == "FluxPipeline"
    assert model_family("tiny") == "StableDiffusionPipeline" and model_family("oracle-gauss") == "oracle"
    assert model_family("org/not-downloaded") is None and model_family("/no/such/folder") is None


@pytest.mark.parametrize("task", sorted(SMALL))
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_task_runs_on_every_family(name, task, family_dirs, fcs_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    spec = TASKS[task]
    options = spec.check_options(SMALL[task])
    actor = TaskActor(str(family_dirs[name]), task=task, options=options, device="cpu", dtype="float32",
                      config=SamplerConfig(**{**spec.sampler.to_dict(), **FAST}))
    mask = hole(32, 32) if task != "layers" else np.pad(np.full((12, 12), 255, np.uint8), 10)
    row = {"id": "a", "image": png(photo(32, 32)), "mask": png(mask) if spec.mask else None}
    table = prepare(pa.Table.from_pylist([row]), storage=Storage.from_uri(str(tmp_path)), task=task,
                    options=options)
    batch = {column: np.array(table.column(column).to_pylist(), dtype=object) for column in table.column_names}
    out = actor(batch)
    assert out["error"][0] is None, out["error"][0]
    h, w = spec.output_size(32, 32, options)
    image = np.frombuffer(out["out"][0], np.uint8).reshape(out["height"][0], out["width"][0], 3)
    assert (image.shape[:2] == (h, w)) and np.isfinite(out["residual_final"][0]) and out["nfe"][0] > 0
