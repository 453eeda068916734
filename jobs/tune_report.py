"""The report page of a tuning run (``<output>/report.html``, one self-contained file): the candidates'
hole PSNR (against the best's, on the same problems) against UNet calls, with 95 % intervals and the
chosen one marked, their numbers, and a
picture strip per candidate (its fills of the first problems, under the sampler's inputs and the truth)."""

from __future__ import annotations

import base64
import html
import io

from fcs.images import encode_png
from pipeline.storage import Storage
from pipeline.tuning import PROBLEMS, load_truth, samples

REPORT = "report.html"
STRIP = 4  # problems shown per candidate
THUMB = 96  # pixels per picture side in the strips


def write_report(output: str, record: dict, endpoint: str | None = None) -> str:
    """Write ``<output>/report.html`` for ``record``; returns its URI."""
    out = Storage.from_uri(output, endpoint)
    page = render(out, record)
    path = out.path(REPORT)
    out.put_atomic(path, page.encode())
    return out.uri(path)


def render(out: Storage, record: dict) -> str:
    truth = load_truth(out)
    shown = record["items"]["problems"][:STRIP]
    fills = {(r["candidate"], r["problem"]): r["image"]["bytes"] for r in samples(out)
             if r["status"] == "ok" and r["problem"] in shown}
    inputs = _inputs(out, shown)
    chosen = record["chosen"]["name"]
    rows = []
    for k, c in enumerate(record["candidates"]):
        pics = "".join(_img(fills[(k, p)]) if (k, p) in fills else "<span>failed</span>" for p in shown)
        mark = " (chosen)" if c["name"] == chosen else ""
        numbers = (f"{c['calls']:g} calls, {c['psnr']['mean']:.2f} dB, SSIM {c['ssim']['mean']:.3f}, detail "
                   f"{c['detail']['mean']:.2f}" if c["psnr"] else f"failed: {html.escape(str(c['error']))}")
        rows.append(f"<tr><th>{html.escape(c['name'])}{mark}<br><small>{numbers}</small></th><td>{pics}</td></tr>")
    head = "".join(_img(inputs[p]) for p in shown if p in inputs)
    truths = "".join(_img(encode_png(truth[p][0])) for p in shown)
    model = record["model"]
    name = html.escape(str(model["id"]))
    skipped = ", ".join(f"{n} {why}" for why, n in record["items"]["skipped"].items()) or "none"
    style = (f"body{{font-family:sans-serif;margin:1.5em}} img{{width:{THUMB}px;height:{THUMB}px;"
             "image-rendering:pixelated;margin:1px} th{text-align:left;font-weight:normal;padding-right:1em} "
             "table{border-collapse:collapse} td,th{border-bottom:1px solid #ddd;vertical-align:middle}")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fcs tune {record['task']}: {name}</title>
<style>{style}</style></head><body>
<h1>fcs tune {record['task']}: {name}</h1>
<p>Chosen: <b>{html.escape(chosen)}</b> ({record['chosen']['calls']:g} UNet calls per item, hole PSNR
{record['chosen']['psnr']['mean']:.2f} dB). Rule: {html.escape(record['rule']['text'])}.</p>
<p>{record['items']['used']} problem(s) from {record['items']['read']} item(s) of {html.escape(record['input'])}
(skipped: {html.escape(skipped)}). Weights {html.escape(str(model.get('fingerprint')))}; device
{html.escape(str(record['hardware']['device']))}; {record['created_at']}.</p>
{_img(_plot(record), width=640)}
<table><tr><th>the sampler's input</th><td>{head}</td></tr><tr><th>truth</th><td>{truths}</td></tr>
{''.join(rows)}</table></body></html>
"""


def _inputs(out: Storage, shown: list[str]) -> dict[str, bytes]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(out.read_bytes(out.path(PROBLEMS, "part-0.parquet"))), columns=["id", "image"])
    return {r["id"].split("/", 1)[1]: r["image"] for r in table.to_pylist()
            if r["id"].startswith("0/") and r["id"].split("/", 1)[1] in shown}


def _img(png: bytes, width: int | None = None) -> str:
    style = f' style="width:{width}px;height:auto"' if width else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"{style}>'


def _plot(record: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    # the paired difference to the best on the same problems: the items' own spread cancels out
    ax.axhspan(-record["rule"]["tolerance_db"], 0, color="green", alpha=0.08, label="within the tolerance")
    for c in record["candidates"]:
        d = c.get("psnr_vs_best")
        if not d:
            continue
        chosen = c["name"] == record["chosen"]["name"]
        ax.errorbar(c["calls"], d["mean"], yerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]], fmt="o",
                    color="crimson" if chosen else "steelblue", ms=7 if chosen else 4, capsize=2)
        ax.annotate(c["name"], (c["calls"], d["mean"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("UNet calls per item")
    ax.set_ylabel("hole PSNR minus the best's (dB)")
    ax.set_title(f"fcs tune {record['task']}: quality against calls (95% paired intervals; red: chosen)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
