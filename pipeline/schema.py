"""The output data contract: one row per input id, whatever the task (a task may add image columns)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # PNG bytes + a file name
SAMPLER_METRICS = pa.schema([  # measured per item by the sampler actor; the encode stage copies them as they are
    ("sample_s", pa.float64()),         # sampler seconds for this item (batch time / batch size)
    ("batch_size", pa.int32()),
    ("nfe", pa.int64()),                # UNet forward passes
    ("residual_init", pa.float64()),
    ("residual_final", pa.float64()),
    ("peak_mem_mb", pa.float64()),
    ("worker", pa.string()),
    ("node", pa.string()),
    ("device", pa.string()),
])
OUTPUT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("status", pa.string()),            # "ok" | "error"
    ("error", pa.string()),             # null or a one-line reason starting with the stage name
    ("error_kind", pa.string()),        # null, "transient" (a rerun may succeed) or "permanent" (pipeline.errors)
    ("image", IMAGE_TYPE),              # PNG, null on error
    *SAMPLER_METRICS,
    ("model", pa.string()),
    ("task", pa.string()),
    ("seed", pa.int64()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
])
METRIC_COLUMNS = [name for name in OUTPUT_SCHEMA.names if name != "image"]


def output_schema(extra_images: Sequence[str] = ()) -> pa.Schema:
    """``OUTPUT_SCHEMA`` plus one PNG column (null on error) per extra output image of a task."""
    return pa.schema(list(OUTPUT_SCHEMA) + [(name, IMAGE_TYPE) for name in extra_images])
