"""Where lake objects live: a local directory or an S3 bucket prefix, behind one small interface.

`put` is atomic on both: S3 objects appear whole on a successful PUT; local files are written
to a temporary name, fsynced and renamed. So a crash never leaves a half-written Parquet file.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from robolake.settings import Settings


class LakeUnavailable(RuntimeError):
    """The lake cannot be written now; the message says where and why."""


class LakeStore(ABC):
    root: str  # as DuckDB and pyarrow address it: an absolute path or s3://bucket/prefix

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys (relative to the root) under `prefix`, sorted."""

    @abstractmethod
    def delete(self, keys: list[str]) -> None: ...

    def url(self, key: str) -> str:
        return f"{self.root}/{key}"

    def probe(self) -> None:
        """Write, read and delete a small object: fail at start-up, not after an hour of consuming."""
        key = f"_robolake/probe-{uuid.uuid4().hex}"
        try:
            self.put(key, b"probe")
            assert self.get(key) == b"probe"
            self.delete([key])
        except Exception as exc:
            raise LakeUnavailable(f"the lake at {self.root} is not writable: {exc}") from exc


class LocalStore(LakeStore):
    def __init__(self, root: str):
        self.root = root
        self._root = Path(root)

    def put(self, key: str, data: bytes) -> None:
        path = self._root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes:
        return (self._root / key).read_bytes()

    def list(self, prefix: str = "") -> list[str]:
        base = self._root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self._root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            (self._root / key).unlink(missing_ok=True)


class S3Store(LakeStore):
    def __init__(self, settings: Settings):
        from infra.object_store import s3_client

        self.root = settings.lake_root
        self.bucket = settings.lake_bucket
        self.prefix = settings.lake_root.removeprefix(f"s3://{self.bucket}").strip("/")
        self.client = s3_client(settings)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        from infra.object_store import put_bytes

        put_bytes(self.client, self.bucket, self._key(key), data)

    def get(self, key: str) -> bytes:
        from minio.error import S3Error

        from infra.object_store import get_bytes

        try:
            return get_bytes(self.client, self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code == "NoSuchKey":  # the same error a local store raises
                raise FileNotFoundError(f"{self.root}/{key}") from None
            raise

    def list(self, prefix: str = "") -> list[str]:
        start = len(self.prefix) + 1 if self.prefix else 0
        objects = self.client.list_objects(self.bucket, prefix=self._key(prefix), recursive=True)
        return sorted(o.object_name[start:] for o in objects)

    def delete(self, keys: list[str]) -> None:
        from minio.deleteobjects import DeleteObject

        if keys:
            errors = list(self.client.remove_objects(self.bucket, [DeleteObject(self._key(k)) for k in keys]))
            if errors:
                raise LakeUnavailable(f"could not delete {len(errors)} objects from {self.root}: {errors[0]}")


def open_store(settings: Settings) -> LakeStore:
    if settings.lake_is_s3:
        from infra.optional import require

        require("minio", "s3")
        return S3Store(settings)
    return LocalStore(settings.lake_root)
