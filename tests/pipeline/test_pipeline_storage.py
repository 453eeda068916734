"""Storage: URI parsing, the S3 endpoint for both s3fs and pyarrow, atomic publishing, listing."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.storage import Storage


def test_plain_paths_and_file_uris_are_local_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Storage.from_uri("data/x") == Storage("file", str(tmp_path / "data" / "x"), None)
    assert Storage.from_uri(f"file://{tmp_path}/y/").root == str(tmp_path / "y")
    assert Storage.from_uri("file://localhost/abs/z").root == "/abs/z"
    # relative file URIs stay relative to the working folder (urlparse would take "out" for a host)
    assert Storage.from_uri("file://out").root == str(tmp_path / "out")
    assert Storage.from_uri("file://results/run1").root == str(tmp_path / "results" / "run1")


def test_listing_under_a_root_with_glob_characters(tmp_path):
    """A root such as run[1]* is a folder name, not a pattern: its files are all found."""
    root = tmp_path / "run[1]*?"
    (root / "sub").mkdir(parents=True)
    for name in ("part-a.parquet", "sub/b.parquet", "c.txt"):
        (root / name).write_bytes(b"x")
    store = Storage.from_uri(str(root))
    assert [store.relative(p) for p in store.list_files("part-*.parquet")] == ["part-a.parquet"]
    assert [store.relative(p) for p in store.list_files("**/*.parquet")] == ["part-a.parquet", "sub/b.parquet"]


def test_s3_endpoint_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert Storage.from_uri("s3://bucket/a/b/").endpoint is None
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:9000")
    s = Storage.from_uri("s3://bucket/a/b/")
    assert (s.protocol, s.root, s.endpoint) == ("s3", "bucket/a/b", "http://env:9000")
    assert Storage.from_uri("s3://bucket/a", "http://flag:1").endpoint == "http://flag:1"
    assert Storage.from_uri("memory://bucket/a").endpoint is None


def test_bad_uris_say_what_is_expected():
    with pytest.raises(ValueError, match="no bucket"):
        Storage.from_uri("s3:///nobucket")
    with pytest.raises(ValueError, match="empty URI"):
        Storage.from_uri("")
    with pytest.raises(ValueError, match="cannot use 'foo://b/x': Protocol not known: foo"):
        Storage.from_uri("foo://b/x")


def test_a_filesystem_that_is_not_installed_is_named_when_the_uri_is_parsed():
    """gs:// needs gcsfs (the optional ``gcs`` extra): without it a job fails before any work, saying so."""
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        assert Storage.from_uri("gs://b/x").protocol == "gs"
    else:
        with pytest.raises(ValueError, match="cannot use 'gs://b/x': .*gcsfs"):
            Storage.from_uri("gs://b/x")


def test_pickles_without_filesystems(tmp_path):
    s = Storage.from_uri(str(tmp_path))
    _ = s.fs, s.arrow_fs  # build both
    clone = pickle.loads(pickle.dumps(s))
    assert clone == s and "_fs" not in clone.__dict__


def test_put_atomic_local_leaves_no_partial_file(tmp_path):
    s = Storage.from_uri(str(tmp_path))
    s.put_atomic(s.path("a.bin"), b"x" * 10)
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 10
    assert list((tmp_path / "_fcs" / "tmp").iterdir()) == []


def test_resolve_paths_found_in_data(tmp_path):
    s = Storage.from_uri(str(tmp_path))
    assert s.resolve("images/a.png") == str(tmp_path / "images" / "a.png")
    assert s.resolve("/abs/a.png") == "/abs/a.png"
    assert s.resolve("file:///abs/a.png") == s.resolve("file://localhost/abs/a.png") == "/abs/a.png"
    assert s.resolve("file://images/a.png") == str(tmp_path / "images" / "a.png")  # relative, like a plain path
    assert Storage.from_uri("s3://b/root").resolve("s3://other/k.png") == "other/k.png"
    assert Storage.from_uri("s3://b/root").resolve("k.png") == "b/root/k.png"


def test_s3_endpoint_reaches_both_s3fs_and_pyarrow(s3_endpoint, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s = Storage.from_uri(f"s3://{bucket}/prefix")
    s.put_atomic(s.path("t.parquet"), _parquet_bytes())
    assert s.list_files("*.parquet") == [f"{bucket}/prefix/t.parquet"]
    table = pq.read_table(f"{bucket}/prefix/t.parquet", filesystem=s.arrow_fs)  # native pyarrow S3
    assert table.column("id").to_pylist() == ["a"]


def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": ["a"]}), sink)
    return sink.getvalue().to_pybytes()
