"""Recordings in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2 …).

Imported only when ``CALLGATE_RECORDINGS_URL`` is an ``s3://`` URL. boto3 is the reference client of
the field and is thread-safe per client; its calls block, so each runs in a worker thread
(``asyncio.to_thread``) and the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from callgate.domain.recording_store import CHUNK, ByteRange, RecordingStore, RecordingStream
from callgate.errors import ConfigError, NoRecording, StorageUnavailable

try:
    import boto3
    from boto3.exceptions import Boto3Error
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError("CALLGATE_RECORDINGS_URL=s3://… needs boto3: pip install 'callgate[s3]'") from exc

if TYPE_CHECKING:
    from callgate.config import Settings

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_TRANSPORT_ERRORS = (BotoCoreError, ClientError, Boto3Error)


def split_location(location: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``."""
    parts = urlsplit(location)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or not key:
        raise NoRecording("this call has no recording")
    return bucket, key


class S3Store(RecordingStore):
    """The recording store on one bucket; objects are ``<prefix>/<call_id>.wav``."""

    def __init__(self, *, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        parts = urlsplit(settings.recordings_url or "")
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError("CALLGATE_RECORDINGS_URL must look like s3://bucket or s3://bucket/prefix")
        secret = settings.s3_secret_access_key
        config = Config(
            connect_timeout=settings.s3_timeout_s,
            read_timeout=settings.s3_timeout_s,
            # Uploads are retried by Recordings.keep with its own backoff; reads fail fast (503).
            retries={"mode": "standard", "total_max_attempts": 1},
            # Self-hosted services (MinIO, Ceph) are reached by path, not by bucket subdomains.
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
        )
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=config,
        )
        return cls(bucket=parts.netloc, prefix=parts.path, client=client)

    def owns(self, location: str) -> bool:
        return location.startswith("s3://")

    def key_of(self, call_id: str) -> str:
        return f"{self.prefix}/{call_id}.wav" if self.prefix else f"{call_id}.wav"

    async def put(self, *, call_id: str, local: Path) -> str:
        key = self.key_of(call_id)
        try:
            await asyncio.to_thread(
                self._client.upload_file,
                str(local),
                self.bucket,
                key,
                ExtraArgs={"ContentType": "audio/wav"},
            )
        except _TRANSPORT_ERRORS as exc:
            raise StorageUnavailable(f"could not upload to s3://{self.bucket}: {_reason(exc)}") from exc
        return f"s3://{self.bucket}/{key}"

    async def open(self, location: str, *, call_id: str, byte_range: ByteRange | None) -> RecordingStream:
        bucket, key = split_location(location)
        args = {"Bucket": bucket, "Key": key}
        if byte_range is not None:
            args["Range"] = byte_range.header()
        try:
            answer = await asyncio.to_thread(self._client.get_object, **args)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise NoRecording("this call has no recording") from None
            if code == "InvalidRange" and byte_range is not None:  # serve it whole, as a 200
                return await self.open(location, call_id=call_id, byte_range=None)
            raise StorageUnavailable(f"could not read s3://{bucket}: {_reason(exc)}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise StorageUnavailable(f"could not read s3://{bucket}: {_reason(exc)}") from exc
        body = answer["Body"]
        match = _CONTENT_RANGE.match(str(answer.get("ContentRange") or ""))
        if match is not None:
            first, last, size = (int(g) for g in match.groups())
            return RecordingStream(call_id, size, first, last, True, _body_chunks(body))
        size = int(answer["ContentLength"])
        return RecordingStream(call_id, size, 0, size - 1, False, _body_chunks(body))

    async def delete(self, location: str) -> None:
        bucket, key = split_location(location)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=bucket, Key=key)
        except _TRANSPORT_ERRORS as exc:
            raise StorageUnavailable(f"could not remove s3://{bucket}/{key}: {_reason(exc)}") from exc


async def _body_chunks(body: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(body.read, CHUNK):
            yield chunk
    finally:
        body.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')} {error.get('Message', '')}".strip()
    return str(exc)
