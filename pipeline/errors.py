"""Per-item errors: one stable line each, and whether retrying can help.

Every error row's ``error`` starts with the stage that failed. The stage decides its ``error_kind``:

    transient   read (object storage, network, a file not there yet), sample (the sampler raised:
                out of memory, a lost device); a rerun with ``retry_errors`` may succeed
    permanent   decode (not an image), validate (wrong size, bad seed, bad options), encode;
                the same input fails the same way until the input itself is fixed
"""

from __future__ import annotations

from fcs.images import strip_addresses

TRANSIENT_STAGES = ("read", "sample")
PERMANENT_STAGES = ("decode", "validate", "encode")
ERROR_KINDS = ("transient", "permanent")
RETRY_ERRORS = ("none", "transient", "all")  # what a rerun re-processes (JobConfig.retry_errors)


class ItemError(Exception):
    """A per-item failure; ``str(exc)`` is the one-line reason, starting with the stage name."""


def one_line(stage: str, exc: BaseException | str, limit: int = 300) -> str:
    """``<stage>: <reason>`` on one line, at most ``limit`` characters, without object addresses (so
    the same failure reads the same on every row and groups in the summary)."""
    text = strip_addresses(" ".join(str(exc).split())) or type(exc).__name__
    text = text if text.startswith(f"{stage}:") else f"{stage}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_kind(error: str | None) -> str | None:
    """``transient`` or ``permanent`` for an error reason (by its stage prefix), None for no error.
    An error of an unknown stage counts as transient: retrying it costs a rerun, never a lost item."""
    if error is None:
        return None
    return "permanent" if error.split(":", 1)[0].strip() in PERMANENT_STAGES else "transient"


def retried_kinds(retry_errors: str) -> tuple[str, ...]:
    """The error kinds a rerun with ``retry_errors`` (one of :data:`RETRY_ERRORS`) re-processes."""
    return {"none": (), "transient": ("transient",), "all": ERROR_KINDS}[retry_errors]
