"""Acceptance 2: awkward inputs each become an ok row or an error row with a reason; none is lost,
the job exits 0 and reports the error count."""

from __future__ import annotations

import json

from pipeline_testdata import bad_input_rows, check_outcomes, hole, photo, png, read_rows, write_shards

from jobs import batch


def test_bad_parquet_rows_through_the_cli(ray_address, tmp_path, capsys):
    rows, expected = bad_input_rows()
    write_shards(tmp_path / "in", rows, per_shard=5)
    out = tmp_path / "out"
    code = batch.main("restore", ["--input", str(tmp_path / "in"), "--output", str(out), "--actors", "1",
                         "--model", "tiny",
                         "--batch-size", "4", "--steps", "2", "--newton-steps", "1"])
    assert code == 0
    check_outcomes(read_rows(str(out)), expected)
    errors = sum(1 for v in expected.values() if v != "ok")
    printed = capsys.readouterr().out
    assert f"({len(expected) - errors} ok, {errors} error)" in printed
    summary = json.loads((out / "_summary.json").read_text())
    assert (summary["error"], summary["pending"], summary["duplicates"]) == (errors, 0, 0)
    assert sum(summary["this_run"]["error_reasons"].values()) == errors


def test_folder_with_orphans_and_bad_files(ray_address, tmp_path):
    images, masks = tmp_path / "in" / "images", tmp_path / "in" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    (images / "good.png").write_bytes(png(photo()))
    (masks / "good.png").write_bytes(png(hole()))
    (images / "no-mask.jpg").write_bytes(png(photo()))
    (masks / "no-image.png").write_bytes(png(hole()))
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (masks / "broken.png").write_bytes(png(hole()))
    out = tmp_path / "out"
    assert batch.main("restore", ["--input", str(tmp_path / "in"), "--output", str(out), "--model", "tiny",
                         "--steps", "2", "--newton-steps", "1"]) == 0
    check_outcomes(read_rows(str(out)), {
        "good": "ok", "no-mask": "read: mask is missing", "no-image": "read: image is missing",
        "broken": "decode: cannot decode image",
    })
