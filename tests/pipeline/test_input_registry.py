"""The input format registry: every format is one complete Source, options are declared and checked
once, and a new format is one class plus one registry entry (proved with a toy format)."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest
from pipeline_testdata import FAST, assert_exactly_once, hole, photo, png, read_rows

import pipeline
from fcs.settings import Setting
from pipeline.sources import registry
from pipeline.sources.base import Inputs, Source
from pipeline.sources.common import Listing, read_listing, unique_ids
from pipeline.stages import prepare
from pipeline.storage import Storage


@pytest.mark.parametrize("name", list(registry.FORMATS))
def test_every_format_is_a_complete_source(name):
    source = registry.FORMATS[name]
    assert isinstance(source, Source) and source.name == name and source.about  # instantiable: nothing abstract
    for method in ("detect", "discover", "read", "check_options"):
        assert callable(getattr(source, method))
    for opt in source.options:
        assert isinstance(opt, Setting) and opt.help and opt.check(opt.default) is None
    defaults = source.check_options({})
    assert defaults == {o.name: o.default for o in source.options}  # defaults pass their own checks unchanged


def test_each_format_is_detected_in_one_declared_order():
    assert sorted(registry.DETECTION_ORDER) == sorted(registry.FORMATS)
    assert len(set(registry.DETECTION_ORDER)) == len(registry.DETECTION_ORDER)
    assert registry.INPUT_FORMATS == ("auto", *registry.FORMATS)
    assert registry.DETECTION_ORDER[-1] == "parquet"  # the fallback claims anything: it must come last


def test_auto_detects_each_layout(tmp_path):
    (tmp_path / "f" / "images").mkdir(parents=True)
    (tmp_path / "m.csv").write_text("id,image_uri\n")
    found = {uri: registry.detect(Storage.from_uri(str(tmp_path / uri))).name
             for uri in ("f", "s/{0..3}.tar", "m.csv", "p.parquet")}
    assert found == {"f": "folder", "s/{0..3}.tar": "webdataset", "m.csv": "manifest", "p.parquet": "parquet"}


def test_input_options_are_checked_by_their_format():
    defaults = registry.check_input_options("webdataset", {})
    assert defaults == {"image_suffixes": ("jpg", "jpeg", "png", "webp"), "mask_suffix": "mask.png",
                        "prompt_suffix": None}
    given = registry.check_input_options("auto", {"image_suffixes": ".png", "prompt_suffix": ".txt"})
    assert (given["image_suffixes"], given["prompt_suffix"]) == (("png",), "txt")  # one string, dots dropped
    assert registry.check_input_options("parquet", None) == {}


@pytest.mark.parametrize("fmt, values, message", [
    ("webdataset", {"image_suffixes": []},
     "config field 'input_options.image_suffixes': got (), expected a non-empty list of member suffixes"),
    ("auto", {"mask_suffix": 3}, "config field 'input_options.mask_suffix': got 3, expected a member suffix"),
    ("webdataset", {"image_suffixes": ["png"], "mask_suffix": "png"},
     "config field 'input_options.mask_suffix': got 'png', expected a suffix other than the image's: png"),
    ("parquet", {"mask_suffix": "m.png"},
     "config field 'input_options.mask_suffix': not an option of input format 'parquet' (allowed: none)"),
    ("webdataset", {"prompt": "txt"}, "config field 'input_options.prompt': not an option of input format "
                                      "'webdataset' (allowed: image_suffixes, mask_suffix, prompt_suffix)"),
    ("tfrecord", {}, "input_format 'tfrecord' is not a registered input format; expected one of auto, parquet"),
])
def test_bad_input_options_name_the_field(fmt, values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        registry.check_input_options(fmt, values)


# -- a new format: one class, one registry entry ----------------------------------------------------
class JsonlSource(Source):
    """A toy format: a ``.jsonl`` file of {"id", "image", "mask"} paths relative to it."""

    name = "jsonl"
    about = "a .jsonl file of id, image and mask paths"
    options = (Setting("mask_key", "mask", "the key holding the mask path",
                       lambda v: None if isinstance(v, str) else "a key name"),)

    def detect(self, storage: Storage) -> bool:
        return storage.root.endswith(".jsonl")

    def discover(self, storage: Storage, *, mask: bool, options: dict, s3_endpoint: str | None) -> Inputs:
        lines = [json.loads(line) for line in storage.read_bytes(storage.root).decode().splitlines()]
        table = pa.table({"id": [r["id"] for r in lines], "image_path": [r["image"] for r in lines],
                          "mask_path": [r.get(options["mask_key"]) for r in lines]})
        base = Storage(storage.protocol, storage.root.rsplit("/", 1)[0])
        return Inputs(self.name, base, unique_ids(table.column("id").combine_chunks()), table.schema, Listing(table))

    def read(self, inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None):
        return read_listing(inputs, done, block_rows=block_rows, limit=limit)


@pytest.fixture
def jsonl_input(tmp_path, monkeypatch) -> str:
    """A toy format registered for one test, detected before the Parquet fallback, and its input file."""
    monkeypatch.setitem(registry.FORMATS, "jsonl", JsonlSource())
    monkeypatch.setattr(registry, "DETECTION_ORDER", ("jsonl", *registry.DETECTION_ORDER))
    (tmp_path / "a.png").write_bytes(png(photo()))
    (tmp_path / "hole.png").write_bytes(png(hole()))
    rows = [{"id": "a", "image": "a.png", "mask": "hole.png"}, {"id": "gone", "image": "gone.png", "mask": "hole.png"},
            {"id": "b", "image": "a.png", "mask": "hole.png", "mask2": "a.png"}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path / "items.jsonl")


def test_a_new_format_needs_no_other_change(jsonl_input):
    inputs = registry.discover(Storage.from_uri(jsonl_input))
    assert inputs.kind == "jsonl" and inputs.ids.to_pylist() == ["a", "gone", "b"]
    rows = {r["id"]: r["error"] for r in prepare(inputs.data.table, storage=inputs.storage).to_pylist()}
    assert rows["a"] is None and rows["gone"].startswith("read: cannot read image 'gone.png': FileNotFoundError")
    options = registry.check_input_options("auto", {"mask_key": "mask2"})  # its option joins auto's union
    inputs = registry.discover(Storage.from_uri(jsonl_input), options=options)
    rows = {r["id"]: r["error"] for r in prepare(inputs.data.table, storage=inputs.storage).to_pylist()}
    assert rows["a"] == "read: mask is missing (column is null)" and rows["b"] is None
    with pytest.raises(ValueError, match="'input_options.mask_key': got 1, expected a key name"):
        registry.check_input_options("jsonl", {"mask_key": 1})


def test_a_new_format_runs_as_a_job(ray_address, jsonl_input, tmp_path):
    """Through pipeline.run: detected, read and committed, one row per id, with nothing else changed."""
    summary = pipeline.run(pipeline.JobConfig(input=jsonl_input, output=str(tmp_path / "out"), model="tiny",
                                              batch_size=2, sampler=FAST))
    errors = {r["id"]: r["error"] for r in read_rows(str(tmp_path / "out")).to_pylist()}
    assert (summary["inputs"], summary["ok"], summary["error"]) == (3, 2, 1), errors
    assert_exactly_once(read_rows(str(tmp_path / "out")), ["a", "gone", "b"])
