"""What a recording store is (:class:`RecordingStore`), the one on this node's disk (:class:`LocalStore`),
and the plain values both hand out: a :class:`ByteRange` asked for, a :class:`RecordingStream` opened.

The node's service over them, and the S3 store, are in ``recordings.py`` and ``recordings_s3.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from callgate.errors import NoRecording

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One range of an HTTP ``Range: bytes=…`` header: ``first-last``, ``first-`` or ``-suffix``."""

    first: int | None
    last: int | None

    @classmethod
    def parse(cls, header: str | None) -> ByteRange | None:
        """The range asked for, or ``None`` (no header, several ranges, or nonsense): the whole file."""
        match = _RANGE.match((header or "").strip())
        if match is None or match.groups() == ("", ""):
            return None
        first, last = (int(g) if g else None for g in match.groups())
        if first is not None and last is not None and last < first:
            return None
        if first is None and last == 0:
            return None
        return cls(first, last)

    def resolve(self, size: int) -> tuple[int, int] | None:
        """``(first, last)`` byte offsets (inclusive) within ``size`` bytes, or ``None`` if unsatisfiable."""
        if self.first is None:
            assert self.last is not None
            return (max(size - self.last, 0), size - 1) if size else None
        if self.first >= size:
            return None
        return self.first, min(self.last if self.last is not None else size - 1, size - 1)

    def header(self) -> str:
        return f"bytes={'' if self.first is None else self.first}-{'' if self.last is None else self.last}"


@dataclass(frozen=True, slots=True)
class RecordingStream:
    """An opened recording: bytes ``first..last`` (inclusive) of ``size``, read as ``chunks``."""

    call_id: str
    size: int
    first: int
    last: int
    partial: bool
    chunks: AsyncIterator[bytes]

    @property
    def length(self) -> int:
        return self.last - self.first + 1 if self.size else 0


class RecordingStore(ABC):
    """Where finished recordings are kept. Errors: :class:`NotFound`, :class:`StorageUnavailable`."""

    @abstractmethod
    def owns(self, location: str) -> bool:
        """Whether ``location`` is one of this store's."""

    @abstractmethod
    async def put(self, *, call_id: str, local: Path) -> str:
        """Keep the finished file ``local``; the location to store on the call."""

    @abstractmethod
    async def open(self, location: str, *, call_id: str, byte_range: ByteRange | None) -> RecordingStream:
        """The recording at ``location`` (or the part ``byte_range`` asks for, if it can be served)."""

    @abstractmethod
    async def delete(self, location: str) -> None:
        """Remove the recording at ``location`` (nothing happens if it is not there)."""


class LocalStore(RecordingStore):
    """Recordings on this node's disk (or a volume every node mounts): the spooled file is the recording."""

    def owns(self, location: str) -> bool:
        return "://" not in location

    async def put(self, *, call_id: str, local: Path) -> str:
        return str(local)

    async def open(self, location: str, *, call_id: str, byte_range: ByteRange | None) -> RecordingStream:
        try:
            f = open(location, "rb")  # noqa: ASYNC230, SIM115 - one open; the reads go to a thread
        except OSError:
            raise NoRecording("this call has no recording") from None
        size = os.fstat(f.fileno()).st_size
        span = byte_range.resolve(size) if byte_range else None
        first, last = span if span else (0, size - 1)
        f.seek(first)
        return RecordingStream(
            call_id, size, first, last, span is not None, _file_chunks(f, last - first + 1)
        )

    async def delete(self, location: str) -> None:
        await asyncio.to_thread(Path(location).unlink, missing_ok=True)


async def _file_chunks(f: BinaryIO, remaining: int) -> AsyncIterator[bytes]:
    try:
        while remaining > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        f.close()
