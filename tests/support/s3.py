"""A local server that speaks the S3 protocol (moto's, in a thread), for the recording storage tests.

with S3Server() as s3:
    bucket = s3.new_bucket()
    settings = make_settings(..., **s3.settings(bucket))
"""

from __future__ import annotations

import itertools
from types import TracebackType
from typing import Any, Self

import boto3
from moto.server import ThreadedMotoServer

from tests.support.services import free_port

_buckets = itertools.count()


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.stop()

    def client(self) -> Any:
        """A plain boto3 client on the server, to look at the bucket as an operator would."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def new_bucket(self) -> str:
        name = f"recordings-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, *, prefix: str = "calls") -> dict[str, object]:
        """The callgate settings that keep recordings in ``bucket`` under ``prefix``."""
        return {
            "recordings_url": f"s3://{bucket}/{prefix}",
            "s3_endpoint_url": self.url,
            "s3_region": "us-east-1",
            "s3_access_key_id": "test",
            "s3_secret_access_key": "test",
        }

    def object_bytes(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return [item["Key"] for item in listed.get("Contents", [])]


def unreachable_s3_settings(bucket: str = "recordings") -> dict[str, object]:
    """Settings for an S3 service that is down: nothing listens on the endpoint's port."""
    return {
        "recordings_url": f"s3://{bucket}/calls",
        "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "s3_region": "us-east-1",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
        "s3_timeout_s": 2.0,
    }
