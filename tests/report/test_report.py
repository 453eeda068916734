"""`fcs report`: a self-contained HTML page that headless Chromium renders with all images."""

import datetime as dt
import io
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs import report
from pipeline.output import OUTPUT_SCHEMA


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def finished_job(tmp_path):
    """A job's input folder and committed output (the output contract, written directly)."""
    rng = np.random.default_rng(0)
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "images").mkdir(parents=True)
    (inp / "masks").mkdir()
    out.mkdir()
    rows, t0 = [], dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i in range(6):
        rgb = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:30, 10:30] = 255
        (inp / "images" / f"item{i}.png").write_bytes(_png(rgb))
        (inp / "masks" / f"item{i}.png").write_bytes(_png(mask))
        ok = i != 3
        rows.append({
            "id": f"item{i}", "status": "ok" if ok else "error",
            "error": None if ok else "decode: cannot decode image: truncated",
            "image": {"bytes": _png(255 - rgb), "path": f"item{i}.png"} if ok else None,
            "sample_s": 0.5 + 0.1 * i if ok else None, "batch_size": 2, "nfe": 220 if ok else None,
            "residual_init": 1.0, "residual_final": 0.01, "peak_mem_mb": 100.0, "worker": f"actor-{i % 2}",
            "node": "node-0", "device": "cpu", "model": "tiny", "task": "restore", "seed": i,
            "started_at": t0 + dt.timedelta(seconds=i), "finished_at": t0 + dt.timedelta(seconds=i + 1),
        })
    pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), out / "part-test.parquet")
    return inp, out


def test_report_contents(finished_job, tmp_path):
    inp, out = finished_job
    page, sheet, _ = report.build_report(str(out), str(inp), sample=4)
    assert 'id="count-ok">5<' in page and 'id="count-error">1<' in page
    assert "decode: cannot decode image: truncated" in page
    assert page.count("data:image/png;base64,") == 3  # contact sheet, latency, throughput
    assert sheet.width == 3 * (report.THUMB + 4) + 4  # input / mask / output columns
    assert "http://" not in page and "https://" not in page  # self-contained


def test_report_cli_writes_html_and_png(finished_job, tmp_path):
    inp, out = finished_job
    target = tmp_path / "r" / "report.html"
    assert report.main([str(out), "--input", str(inp), "--out", str(target)]) == 0
    assert target.exists() and target.with_suffix(".png").exists()
    assert Image.open(target.with_suffix(".png")).size[0] > 0


def test_report_on_missing_output_fails_clearly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no committed output rows" in capsys.readouterr().out


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None,
                    reason="no headless Chromium on this machine (make test installs it where apt-get works)")
def test_report_renders_in_headless_chromium(finished_job, tmp_path):
    inp, out = finished_job
    target = tmp_path / "report.html"
    assert report.main([str(out), "--input", str(inp), "--out", str(target)]) == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", target.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ok="true"' in dom.stdout  # every <img> decoded with non-zero size
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1100,1400", target.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 5  # not a blank page
