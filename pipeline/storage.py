"""Where a URI lives and how to reach it: one explicit fsspec and one pyarrow filesystem per URI.

``s3://``, ``gs://``, ``file://`` and plain paths. pyarrow ignores ``AWS_ENDPOINT_URL``, so the S3
endpoint (MinIO, moto, R2, ...) is resolved once, from ``--s3-endpoint`` or that variable, and given
to both s3fs and pyarrow. Credentials are never read or shipped here: every process (driver and Ray
workers) resolves them from its own standard AWS chain (environment, ~/.aws, instance metadata).
"""

from __future__ import annotations

import glob
import logging
import os
import posixpath
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
READ_ATTEMPTS = 4       # reads of one object from object storage before it is an error row
READ_BACKOFF_S = 0.25   # first wait between attempts, doubled each time (0.25 + 0.5 + 1 s at most)

NOT_RETRIED = (PermissionError, IsADirectoryError, NotADirectoryError)  # another try cannot fix these

log = logging.getLogger(__name__)


def _check_backend(protocol: str, uri: str) -> None:
    """A URI whose filesystem is not installed fails here with fsspec's reason (gs:// needs gcsfs,
    the ``gcs`` extra), not deep inside a job."""
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot use {uri!r}: {exc}") from None


def _file_path(uri: str) -> str:
    """The path of a local URI or path: ``file://out`` and ``file://a/b`` are relative, as fsspec reads
    them (urlparse would take "out" for a host); ``file:///x`` and ``file://localhost/x`` are absolute."""
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return path[len("localhost"):] if path.startswith("localhost/") else path


def worth_retrying(exc: Exception, retry_missing: bool = True) -> bool:
    """Whether another read may succeed: not for a denied or wrong-kind path; for a missing object
    only when ``retry_missing`` (a just-written object may not be visible yet)."""
    if isinstance(exc, NOT_RETRIED):
        return False
    return retry_missing or not isinstance(exc, FileNotFoundError)


def _precondition_failed(exc: Exception) -> bool:
    """Whether an S3 call failed because its condition did not hold: 412 (the object exists; s3fs
    raises FileExistsError only when the store names the condition, SeaweedFS does not) or AWS's 409
    for a conditional write racing another one (this one created nothing: the caller looks again)."""
    if isinstance(exc, FileExistsError):
        return True
    error = getattr(exc.__cause__, "response", None) or {}
    return error.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict")


def _write_synced(path: str, data: bytes) -> str:
    """Write a local file and flush it to disk (before it is renamed or linked into place)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


@dataclass
class Storage:
    """A location (``protocol`` + ``root`` without the protocol) and the filesystems that reach it.

    Picklable: only the protocol, root and endpoint travel to Ray workers; filesystems are built
    lazily in each process.
    """

    protocol: str
    root: str
    endpoint: str | None = None

    @classmethod
    def from_uri(cls, uri: str, endpoint: str | None = None) -> Storage:
        """Parse ``uri``; for ``s3://`` the endpoint is ``endpoint`` or ``$AWS_ENDPOINT_URL`` (None = AWS)."""
        if not uri:
            raise ValueError("empty URI: give a local path or an s3://, gs:// or file:// URI")
        parsed = urlparse(uri)
        protocol = parsed.scheme if len(parsed.scheme) > 1 else "file"  # "C:" style drive letters stay local
        if protocol == "file":
            root = os.path.abspath(_file_path(uri))
        else:
            root = (parsed.netloc + parsed.path).rstrip("/")
            if not parsed.netloc:
                raise ValueError(f"URI {uri!r} has no bucket; expected {protocol}://BUCKET/PREFIX")
        if protocol in ("s3", "s3a"):
            protocol, endpoint = "s3", endpoint or os.environ.get(ENDPOINT_ENV) or None
        else:
            endpoint = None
            _check_backend(protocol, uri)
        return cls(protocol, root.rstrip("/") or "/", endpoint)

    # -- filesystems --------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"protocol": self.protocol, "root": self.root, "endpoint": self.endpoint}

    @property
    def fs(self):
        """The fsspec filesystem (s3fs for S3) with the resolved endpoint."""
        if "_fs" not in self.__dict__:
            import fsspec

            options = {"endpoint_url": self.endpoint} if self.endpoint else {}
            self.__dict__["_fs"] = fsspec.filesystem(self.protocol, **options)
        return self.__dict__["_fs"]

    @property
    def arrow_fs(self):
        """The pyarrow filesystem for Ray's Parquet reader (native S3/GCS/local, else via fsspec)."""
        if "_arrow_fs" not in self.__dict__:
            self.__dict__["_arrow_fs"] = self._make_arrow_fs()
        return self.__dict__["_arrow_fs"]

    def _make_arrow_fs(self):
        import pyarrow.fs as pafs

        if self.protocol == "file":
            return pafs.LocalFileSystem()
        if self.protocol == "s3":
            options = {}
            if self.endpoint:
                url = urlparse(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}")
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                options = dict(endpoint_override=url.netloc, scheme=url.scheme, region=region)
            return pafs.S3FileSystem(**options)
        if self.protocol in ("gs", "gcs"):
            return pafs.GcsFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    # -- paths --------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """A path under the root, in the filesystems' own form (no protocol)."""
        return posixpath.join(self.root, *parts) if parts else self.root

    def uri(self, path: str | None = None) -> str:
        path = self.root if path is None else path
        return path if self.protocol == "file" else f"{self.protocol}://{path}"

    def relative(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    def resolve(self, path: str) -> str:
        """A path found in the data (a URI, a local absolute path, or relative to the root) in
        filesystem form."""
        if self.protocol != "file":
            if "://" not in path:
                return self.path(path)
            parsed = urlparse(path)
            return parsed.netloc + parsed.path
        path = _file_path(path)
        return path if os.path.isabs(path) else self.path(path)

    # -- IO -----------------------------------------------------------------------------------
    def read_bytes(self, path: str, attempts: int = 1, retry_missing: bool = True) -> bytes:
        """The object's bytes; up to ``attempts`` tries with doubling waits (object stores fail
        requests now and then, and a just-written object may not be visible yet) for failures
        :func:`worth_retrying`; the last failure is raised."""
        for attempt in range(attempts):
            try:
                return self.fs.cat_file(path)
            except Exception as exc:  # noqa: BLE001 - the last failure, or one not worth retrying, is raised
                if attempt + 1 >= attempts or not worth_retrying(exc, retry_missing):
                    raise
                wait = READ_BACKOFF_S * 2**attempt
                log.info("read of %s failed (%s: %s); retrying in %.2f s", self.uri(path), type(exc).__name__, exc,
                         wait)
                time.sleep(wait)
                self.fs.invalidate_cache(path)
        raise ValueError(f"attempts must be >= 1, got {attempts}")

    def put_atomic(self, path: str, data: bytes) -> None:
        """Publish ``data`` at ``path`` all at once: readers see the whole file or no file.

        Object stores publish a key only when its upload completes; local files are written under
        ``_fcs/tmp`` beside the output and renamed into place (atomic on one filesystem).
        """
        if self.protocol != "file":
            self.fs.pipe_file(path, data)
            return
        tmp_dir = self.path("_fcs", "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        tmp = _write_synced(os.path.join(tmp_dir, f"{uuid.uuid4().hex}.tmp"), data)
        os.replace(tmp, path)

    def put_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data`` only if nothing is there yet; False when something is
        (another writer was first). One atomic step on local disks (a hard link of a finished file)
        and on S3 stores that honour ``If-None-Match: *`` (see :meth:`create_is_atomic`); on any
        other store a check, then a write: two writers a few milliseconds apart can both succeed."""
        if self.protocol == "file":
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            tmp = _write_synced(posixpath.join(posixpath.dirname(path), f".{uuid.uuid4().hex}.tmp"), data)  # hidden
            try:
                os.link(tmp, path)  # fails if path exists: readers never see a half-written file
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if self.protocol == "s3":
            try:
                self.fs.pipe_file(path, data, mode="create")  # PUT with If-None-Match: *
                return True
            except Exception as exc:  # noqa: BLE001 - only a failed precondition means "someone was first"
                if _precondition_failed(exc):
                    return False
                raise
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return True

    def create_is_atomic(self, probe: str) -> bool:
        """Whether :meth:`put_new` is one atomic step here. Local disks: yes. S3: asked of the store
        once per process by writing ``probe`` twice; a store that ignores ``If-None-Match`` (it
        accepts the second create) is not. Other stores (GCS, ...): no."""
        if self.protocol == "file":
            return True
        if self.protocol != "s3":
            return False
        if "_atomic_create" not in self.__dict__:
            self.put_atomic(probe, b"")
            self.__dict__["_atomic_create"] = not self.put_new(probe, b"")
            if not self.__dict__["_atomic_create"]:
                log.warning("%s ignores If-None-Match on PUT: claims on it are not atomic", self.endpoint or "S3")
        return self.__dict__["_atomic_create"]

    def list_files(self, pattern: str) -> list[str]:
        """Files under the root matching a glob relative to it, sorted; listings are never cached."""
        self.fs.invalidate_cache()
        found = self.fs.glob(posixpath.join(glob.escape(self.root), pattern), detail=True)  # a root may hold [ * ?
        return sorted(p for p, info in found.items() if info.get("type") != "directory")
