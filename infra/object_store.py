"""The object store: any S3-compatible server (MinIO here) through the `minio` S3 client.

Transient failures (connection refused while MinIO restarts, 5xx) are retried with capped
exponential backoff at the HTTP layer, so callers see either success or a clear final error.
"""

from __future__ import annotations

import io
import logging
import re

from infra.settings import Settings

log = logging.getLogger(__name__)


def s3_client(settings: Settings, retries: int = 8, backoff_s: float = 0.2, backoff_max_s: float = 8.0):
    """A `minio.Minio` client for the configured endpoint, retrying transient failures."""
    import urllib3
    from minio import Minio

    retry = urllib3.Retry(
        total=retries, connect=retries, read=retries, status=retries,
        backoff_factor=backoff_s, backoff_max=backoff_max_s,
        status_forcelist=(500, 502, 503, 504), allowed_methods=None,  # S3 PUTs are idempotent
        raise_on_status=False,
    )
    http = urllib3.PoolManager(retries=retry, timeout=urllib3.Timeout(connect=5, read=60), maxsize=16)
    return Minio(settings.s3_endpoint, access_key=settings.s3_access_key,
                 secret_key=settings.s3_secret_key, secure=settings.s3_secure, http_client=http)


class AccessDenied(PermissionError):
    """S3 refused our credentials (403): permanent, so failed at once, never retried."""


def access_denied(exc: BaseException, settings: Settings, where: str | None = None) -> AccessDenied | None:
    """An AccessDenied naming what was refused and the credentials settings, if `exc` (a minio
    S3Error, a DuckDB HTTP error) is S3's 403; else None (the failure may be transient)."""
    text = str(exc)
    if not (getattr(exc, "code", None) in _DENIED or getattr(exc, "status_code", None) == 403
            or re.search(r"HTTP (code )?403|\b(AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch)\b", text)):
        return None
    where = where or (re.findall(r"s3://[^\s]+?(?=:?\s|:?$)", text) or ["the lake"])[0]
    return AccessDenied(f"S3 at {settings.s3_endpoint} refused access to {where} (403 Forbidden): check the "
                        "s3_access_key and s3_secret_key settings (ROBOLAKE_S3_ACCESS_KEY, ROBOLAKE_S3_SECRET_KEY)")


_DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")


def ensure_bucket(settings: Settings, bucket: str) -> bool:
    """Create `bucket` if missing; True if it was created. Safe to repeat."""
    client = s3_client(settings)
    if client.bucket_exists(bucket):
        return False
    from minio.error import S3Error

    try:
        client.make_bucket(bucket)
    except S3Error as exc:
        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return False
    log.info("created bucket %s", bucket)
    return True


def put_bytes(client, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


def get_bytes(client, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()
