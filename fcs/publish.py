"""Write a folder at most once across processes and publish it whole: one lock, one private folder, one rename.

Every cached folder that fcs or the pipeline writes (built-in models, the tiny CLIP, staged
downloads) goes through :func:`publish_once`, so readers on one machine never see a half-written
folder and concurrent writers build it once. The lock is ``<folder>.lock`` next to the folder
(``filelock``: released by the OS if its holder dies); the writer fills ``.<folder>.partial-<pid>-<id>``
and renames it into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def publish_once(final: Path, write: Callable[[Path], object], done: str, timeout_s: float = 3600.0) -> bool:
    """Make ``final`` a complete folder, with ``write(partial)`` run at most once across processes.

    Args:
        final: the folder to publish.
        write: fills the given (not yet existing) folder; only its complete result is ever visible.
        done: a file that only a complete folder has (e.g. ``model_index.json``): a folder without
            it is an interrupted older write and is replaced.
        timeout_s: how long to wait for another process writing the same folder.

    Returns:
        True when this call wrote the folder, False when it was already there.

    Raises:
        OSError: waited ``timeout_s`` for another process's lock.
    """
    if (final / done).exists():
        return False
    from filelock import FileLock, Timeout

    lock = final.with_name(f"{final.name}.lock")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock), timeout=timeout_s):
            if (final / done).exists():  # another process published it while this one waited
                return False
            _write_and_rename(final, write)
            return True
    except Timeout:
        raise OSError(f"waited {timeout_s:.0f}s for another process writing {final}; "
                      f"if none is running, delete {lock}") from None


def _write_and_rename(final: Path, write: Callable[[Path], object]) -> None:
    """Runs under the lock: any partial folder left is a killed writer's."""
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    log.info("writing %s", final)
    try:
        write(partial)
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():  # no `done` file: an interrupted older write
            shutil.rmtree(final)
        os.rename(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
