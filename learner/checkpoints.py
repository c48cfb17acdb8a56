"""Checkpoints in the lake (`<lake>/checkpoints/<run_id>/`), written atomically, local or S3.

A checkpoint is one object, `step-<n>.pt` (weights, optimiser, config, data lineage, code
version), then `latest` is pointed at it: a local file is written to a temporary name, fsynced
and renamed; an S3 object appears whole on a successful PUT. So a SIGKILL at any moment leaves
the previous checkpoint as `latest`, never a half-written one.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path


class CheckpointError(RuntimeError):
    pass


def only_trainer(settings, run_id: str, error: type[Exception] = CheckpointError):
    """Held while a run trains: two trainers of one run would overwrite each other's checkpoints
    and send its metrics twice, so the second refuses (`error`) before any work."""
    from infra.lake_catalog import only_one

    return only_one(settings, f"train-{run_id}", lambda path: error(
        f"run {run_id} is being trained by another process on {settings.lake_root} (lock {path}); "
        "wait for it, or pick another --run-id"))


class CheckpointStore:
    def __init__(self, settings, run_id: str):
        self.settings, self.run_id = settings, run_id
        self.prefix = f"checkpoints/{run_id}"
        if settings.lake_is_s3:
            from infra.object_store import s3_client

            self.client = s3_client(settings)
            self.bucket = settings.lake_bucket
            self.root = settings.lake_root.removeprefix(f"s3://{self.bucket}").strip("/")
        else:
            self.client, self.root = None, settings.lake_root

    def save(self, step: int, state: dict) -> str:
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        name = _name(step)
        self._put(name, buffer.getvalue())
        self._put("latest", json.dumps({"checkpoint": name, "step": step}).encode())
        return self.url(step)

    def url(self, step: int) -> str:
        return f"{self.settings.lake_root}/{self.prefix}/{_name(step)}"

    def load_latest(self) -> dict | None:
        pointer = self._get("latest")
        if pointer is None:
            return None
        return self._load(json.loads(pointer)["checkpoint"], "latest names a checkpoint that is missing")

    def latest_step(self) -> int | None:
        """The step of the `latest` checkpoint, read from its pointer alone (None: no checkpoint)."""
        pointer = self._get("latest")
        return None if pointer is None else json.loads(pointer)["step"]

    def load(self, step: int) -> dict:
        """The checkpoint of `step` (a policy version "step-<n>" pins one)."""
        return self._load(_name(step), f"no checkpoint of step {step}")

    def _load(self, name: str, missing: str) -> dict:
        import torch

        data = self._get(name)
        if data is None:
            raise CheckpointError(f"{self.settings.lake_root}/{self.prefix}: {missing}")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)

    def _put(self, name: str, data: bytes) -> None:
        if self.client is not None:
            from minio.error import S3Error

            from infra.object_store import put_bytes

            key = f"{self.root}/{self.prefix}/{name}".lstrip("/")
            try:
                put_bytes(self.client, self.bucket, key, data)
            except S3Error as exc:
                self._raise_if_denied(exc, key)
                raise
            return
        path = Path(self.root) / self.prefix / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _get(self, name: str) -> bytes | None:
        if self.client is not None:
            from minio.error import S3Error

            from infra.object_store import get_bytes

            key = f"{self.root}/{self.prefix}/{name}".lstrip("/")
            try:
                return get_bytes(self.client, self.bucket, key)
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    return None
                self._raise_if_denied(exc, key)
                raise
        path = Path(self.root) / self.prefix / name
        return path.read_bytes() if path.exists() else None

    def _raise_if_denied(self, exc: Exception, key: str) -> None:
        """A 403 as one line naming the object and the credentials settings (AccessDenied)."""
        from infra.object_store import access_denied

        denied = access_denied(exc, self.settings, f"s3://{self.bucket}/{key}")
        if denied is not None:
            raise denied from exc


def _name(step: int) -> str:
    return f"step-{step:09d}.pt"
