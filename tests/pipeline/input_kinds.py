"""Test data in the layouts teams hold: WebDataset tar shards (img2dataset layout) and URI manifests
(a module, not fixtures, so README examples and subprocess scripts can use it too)."""

from __future__ import annotations

import io
import json
import tarfile

from pipeline_testdata import hole, jpeg, photo, png

CORRUPT_KEY, MASKLESS_KEY = "000000001", "000010002"


def metadata(key: str) -> dict:
    """What img2dataset writes in ``<key>.json`` (a few of its fields)."""
    return {"key": key, "url": f"https://example.com/{key}.jpg", "caption": f"photo {key}", "width": 64,
            "height": 64, "license": "CC-BY-4.0"}


def img2dataset_shard(shard: int, per_shard: int = 3, corrupt: str = CORRUPT_KEY, maskless: str = MASKLESS_KEY,
                      ) -> tuple[bytes, list[str]]:
    """One tar shard: ``<key>.jpg``, ``<key>.json``, ``<key>.txt``, ``<key>.mask.png`` per sample (keys
    ``SSSSSIIII`` as img2dataset numbers them); ``corrupt`` gets bytes that are no image, ``maskless``
    no mask. Returns the tar's bytes and its keys."""
    buf = io.BytesIO()
    keys = []
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(per_shard):
            key = f"{shard:05d}{i:04d}"
            keys.append(key)
            members = {"jpg": b"\xff\xd8 not a jpeg" if key == corrupt else jpeg(photo(seed=shard * 10 + i)),
                       "json": json.dumps(metadata(key)).encode(), "txt": f"photo {key}".encode()}
            if key != maskless:
                members["mask.png"] = png(hole())
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), keys
