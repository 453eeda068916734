"""``fcs report OUTPUT_URI``: one self-contained HTML page for a finished job, plus a contact sheet PNG.

    fcs report ./demo-output --input ./demo-input --out report.html

The page holds a contact sheet (input / mask / output for a sample of items; output only when the
input is not given or not found), the latency histogram, throughput per worker over time, and the
error table. Images are embedded as data URIs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

log = logging.getLogger(__name__)
THUMB = 128


def _settings_line(summary: dict) -> str:
    """Where the job's sampler settings came from (a tuning record, the model's own, a preset)."""
    tuning = summary.get("tuning")
    if not tuning:
        return ""
    sampler = (summary.get("config") or {}).get("sampler") or {}
    what = {"tuning": "the tuning record", "model": "the model's own tuning record", "preset": "the preset",
            "default": "the default preset (no tuning record for this model)", "given": "settings given"}
    source = what.get(tuning["source"], tuning["source"])
    record = f" <code id=\"tuning-record\">{html.escape(str(tuning['record']))}</code>" if tuning.get("record") else ""
    chosen = f", candidate <b>{html.escape(str(tuning['candidate']))}</b>" if tuning.get("candidate") else ""
    steps = f"{sampler.get('steps')} outer steps, {sampler.get('newton_steps')} inner ({sampler.get('inner')})"
    return (f"<p id=\"settings\">Sampler settings from {source}{record}{chosen} (preset "
            f"{html.escape(str(tuning.get('preset')))}): {html.escape(steps)}.</p>")


def _png_data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumb(data: bytes | None, mask: bool = False) -> Image.Image:
    blank = Image.new("RGB", (THUMB, THUMB), (90, 90, 90))
    if not data:
        return blank
    try:  # an input that is not an image (an error row's) gets the blank tile
        img = Image.open(io.BytesIO(data))
        img = img.convert("L").convert("RGB") if mask else img.convert("RGB")
    except (OSError, ValueError):
        return blank
    scale = THUMB / max(img.size)  # fit the tile, enlarging small images too (nearest keeps pixels visible)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)


def _bytes(value) -> bytes | None:
    return value.get("bytes") if isinstance(value, dict) else value


def load_inputs(uri: str, ids: list[str], endpoint: str | None) -> dict[str, tuple[bytes | None, bytes | None]]:
    """id -> (image bytes, mask bytes) for ``ids`` from a job's input location."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from pipeline.sources import discover
    from pipeline.storage import Storage

    inputs = discover(Storage.from_uri(uri, endpoint=endpoint), mask=False)  # superres/style inputs have none
    wanted = pa.array(ids, pa.string())
    if inputs.kind == "folder":
        rows = inputs.data.table.filter(pc.is_in(inputs.data.table.column("id"), value_set=wanted)).to_pylist()
        read = lambda p: inputs.storage.read_bytes(inputs.storage.resolve(p)) if p else None  # noqa: E731
        return {r["id"]: (read(r["image_path"]), read(r["mask_path"])) for r in rows}
    dataset = pads.dataset(inputs.data.files, format="parquet", filesystem=inputs.storage.arrow_fs)
    columns = [c for c in ("id", "image", "mask") if c in dataset.schema.names]
    table = dataset.to_table(columns=columns, filter=pc.field("id").isin(wanted))
    return {r["id"]: (_bytes(r["image"]), _bytes(r.get("mask"))) for r in table.to_pylist()}


def contact_sheet(rows: list[dict], inputs: dict) -> Image.Image:
    """A grid with one line per item: input, mask, output (or output only without inputs)."""
    cols = 3 if inputs else 1
    pad, label = 4, 14
    sheet = Image.new("RGB", (cols * (THUMB + pad) + pad, len(rows) * (THUMB + pad + label) + pad), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = pad + r * (THUMB + pad + label)
        draw.text((pad, y), f"{row['id']} [{row['status']}]"[:40], fill=(0, 0, 0))
        tiles = [_thumb(_bytes(row["image"]))]
        if inputs:
            image, mask = inputs.get(row["id"], (None, None))
            tiles = [_thumb(image), _thumb(mask, mask=True)] + tiles
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (pad + c * (THUMB + pad), y + label))
    return sheet


def _figure(plot) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    plot(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _latency_plot(table: pa.Table) -> str:
    ok = [v for v, s in zip(table["sample_s"].to_pylist(), table["status"].to_pylist(), strict=True)
          if s == "ok" and v is not None]

    def plot(ax):
        ax.hist(ok or [0], bins=30, color="#3b7dd8")
        ax.set(xlabel="sample_s (sampler seconds per item)", ylabel="items", title="latency")

    return _figure(plot)


def _throughput_plot(table: pa.Table) -> str:
    finished = table["finished_at"].to_pylist()
    workers = table["worker"].to_pylist()
    times = [f.timestamp() for f in finished if f is not None]
    t0 = min(times) if times else 0.0

    def plot(ax):
        for worker in sorted({w for w in workers if w}):
            ts = sorted(f.timestamp() - t0 for f, w in zip(finished, workers, strict=True)
                        if w == worker and f is not None)
            ax.plot(ts, np.arange(1, len(ts) + 1), label=worker[:16])
        ax.set(xlabel="seconds since first item", ylabel="items finished", title="throughput per worker")
        if workers:
            ax.legend(fontsize=7)

    return _figure(plot)


def build_report(output_uri: str, input_uri: str | None = None, sample: int = 24,
                 endpoint: str | None = None) -> tuple[str, Image.Image, dict]:
    """(html, contact sheet image, summary dict) for the job written at ``output_uri``."""
    from pipeline.output import read_output
    from pipeline.storage import Storage

    storage = Storage.from_uri(output_uri, endpoint=endpoint)
    table = read_output(storage)  # the metric columns only: image bytes are read for the sample alone
    if table.num_rows == 0:
        raise ValueError(f"no committed output rows at {output_uri!r}; is it a finished fcs job's output?")
    summary = {}
    if storage.fs.exists(storage.path("_summary.json")):
        summary = json.loads(storage.read_bytes(storage.path("_summary.json")))
    input_uri = input_uri or summary.get("input")
    table = table.sort_by("id")
    step = max(1, table.num_rows // sample)
    rows = table.take(list(range(0, table.num_rows, step))[:sample]).to_pylist()
    images = read_output(storage, columns=["id", "image"], ids=[r["id"] for r in rows])
    by_id = dict(zip(images["id"].to_pylist(), images["image"].to_pylist(), strict=True))
    for row in rows:
        row["image"] = by_id.get(row["id"])
    inputs = {}
    if input_uri:
        try:
            inputs = load_inputs(input_uri, [r["id"] for r in rows], endpoint)
        except (ValueError, OSError) as exc:
            log.warning("inputs not shown: %s", exc)
    sheet = contact_sheet(rows, inputs)
    statuses = table["status"].to_pylist()
    errors = [r for r in table.select(["id", "error"]).to_pylist() if r["error"]]
    error_rows = "".join(f"<tr><td>{html.escape(r['id'])}</td><td>{html.escape(r['error'])}</td></tr>" for r in errors)
    summary_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v))}</td></tr>"
                           for k, v in summary.items() if not isinstance(v, (dict, list)))
    from_input = f" from input <code>{html.escape(input_uri)}</code>" if input_uri else ""
    settings = _settings_line(summary)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fcs report: {html.escape(output_uri)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}} img{{max-width:100%}}</style></head>
<body>
<h1>fcs job report</h1>
<p>Output <code>{html.escape(output_uri)}</code>{from_input}:
<b id="count-ok">{statuses.count("ok")}</b> ok, <b id="count-error">{statuses.count("error")}</b> error,
{table.num_rows} rows.</p>
{settings}
<h2>Summary</h2><table>{summary_rows or "<tr><td>no _summary.json</td></tr>"}</table>
<h2>Contact sheet ({len(rows)} of {table.num_rows}{": input / mask / output" if inputs else ": output"})</h2>
<img id="contact-sheet" alt="contact sheet" src="{_png_data_uri(sheet)}">
<h2>Latency</h2><img id="latency" alt="latency histogram" src="{_latency_plot(table)}">
<h2>Throughput</h2><img id="throughput" alt="throughput per worker" src="{_throughput_plot(table)}">
<h2>Errors ({len(errors)})</h2>
<table id="errors"><tr><th>id</th><th>error</th></tr>{error_rows or '<tr><td colspan="2">none</td></tr>'}</table>
<script>
// self-check for headless renderers: every image decoded with a non-zero size
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  document.body.dataset.imagesOk = String(imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0));
}});
</script>
</body></html>
"""
    return page, sheet, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fcs report", description="HTML report for a finished fcs job")
    parser.add_argument("output", help="the job's output URI (local path, s3://, gs://, file://)")
    parser.add_argument("--input", default=None, help="the job's input URI (default: from _summary.json)")
    parser.add_argument("--out", default="report.html", help="HTML file to write; the contact sheet PNG goes beside it")
    parser.add_argument("--sample", type=int, default=24, help="items on the contact sheet")
    parser.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL)")
    args = parser.parse_args(argv)
    try:
        page, sheet, _ = build_report(args.output, args.input, args.sample, args.s3_endpoint)
    except (ValueError, OSError) as exc:
        print(f"fcs report: error: {exc}")
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    sheet.save(out.with_suffix(".png"))
    log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0
