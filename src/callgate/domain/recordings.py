"""Call recordings: where a finished recording is kept, so that any node can serve it.

During a call the session writes its stereo WAV to this node's disk (:meth:`Recordings.spool_path`).
When the session is over, :meth:`Recordings.keep` hands the file to the node's
:class:`RecordingStore`, then stores the location the store answers on the call and announces
``call.recording.available``. Two stores:

- :class:`LocalStore` (the default, ``CALLGATE_RECORDINGS_URL`` unset or ``file://``): the file stays
  where it was written. One node, or a directory every node mounts.
- :class:`S3Store` (``CALLGATE_RECORDINGS_URL=s3://bucket/prefix``): the file is uploaded as
  ``s3://bucket/prefix/<call_id>.wav``, then removed from the node's disk. A failed upload is retried
  a few times; after that the local file is kept, the failure logged, and the call has no recording
  (``recording_url`` stays null: no URL is handed out that only one node could answer).

A location is self-describing (``s3://…`` or a local path), so reading follows the location, not the
current configuration: recordings kept on disk before a switch to S3 still play on their node.

boto3 is an optional dependency (``pip install 'callgate[s3]'``), imported only when an ``s3://`` URL is
configured. Its calls block, so every one of them runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from callgate.clock import Clock
from callgate.domain import calls, telephony
from callgate.domain.recording_store import ByteRange, LocalStore, RecordingStore, RecordingStream
from callgate.errors import CallgateError, NoRecording, StorageUnavailable
from callgate.store.db import Database

if TYPE_CHECKING:
    from callgate.config import Settings

log = logging.getLogger(__name__)


class Recordings:
    """The node's recordings: where sessions spool them, keeping them when a call is over, reading them.

    Built by the runtime from :class:`~callgate.config.Settings` (:func:`recordings_from_settings`).
    """

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        spool_dir: Path,
        store: RecordingStore,
        attempts: int = 3,
        retry_delay_s: float = 0.5,
    ) -> None:
        self._db = db
        self._clock = clock
        self.spool_dir = spool_dir
        self.store = store
        self._local = store if isinstance(store, LocalStore) else LocalStore()
        self._attempts = attempts
        self._retry_delay_s = retry_delay_s

    def spool_path(self, call_id: str) -> Path:
        return self.spool_dir / f"{call_id}.wav"

    def _store_of(self, location: str) -> RecordingStore:
        if self.store.owns(location):
            return self.store
        if self._local.owns(location):
            return self._local
        scheme = urlsplit(location).scheme
        raise StorageUnavailable(f"this recording is kept in {scheme}://, and this node has no such storage")

    async def keep(self, *, team_id: str, call_id: str, local: Path) -> str | None:
        """A session's finished recording ``local``: keep it in the store and attach it to the call.

        Returns the location, or ``None`` if the store failed after retries or the call could not be
        updated; then the local file is kept (and logged) so that nothing is lost. Never raises: the
        session that calls it still has to tell its caller and close.
        """
        location = await self._put(call_id=call_id, local=local)
        if location is None:
            return None
        now = self._clock.now()
        try:
            await self._db.write(
                lambda s: calls.attach_recording(
                    s, team_id=team_id, call_id=call_id, location=location, now=now
                )
            )
            if location != str(local):
                await asyncio.to_thread(local.unlink, missing_ok=True)
        except (CallgateError, OSError):
            log.exception(
                "the recording is kept at %s; the call does not say so", location, extra={"call": call_id}
            )
            return None
        return location

    async def _put(self, *, call_id: str, local: Path) -> str | None:
        for attempt in range(1, self._attempts + 1):
            try:
                return await self.store.put(call_id=call_id, local=local)
            except (CallgateError, OSError) as exc:
                if attempt == self._attempts:
                    log.error(
                        "could not keep the recording (%s) after %d attempts; it stays at %s",
                        exc,
                        attempt,
                        local,
                        extra={"call": call_id},
                    )
                    return None
                log.warning("keeping the recording failed (%s); trying again", exc, extra={"call": call_id})
                await asyncio.sleep(self._retry_delay_s * 2 ** (attempt - 1))
        return None

    async def open(
        self, *, team_id: str, call_id: str, byte_range: ByteRange | None = None, phone_only: bool = False
    ) -> RecordingStream:
        """The recording of one of the team's calls (``phone_only``: of its phone calls).

        Raises :class:`NotFound` (no such call, no recording) or :class:`StorageUnavailable`.
        """
        async with self._db.read() as s:
            if phone_only:
                call, _ = await telephony.get_phone_call(s, team_id=team_id, call_id=call_id)
            else:
                call = await calls.get_call(s, team_id=team_id, call_id=call_id)
            location = call.recording_path
        if location is None:
            raise NoRecording("this call has no recording")
        return await self._store_of(location).open(location, call_id=call_id, byte_range=byte_range)

    async def delete(self, location: str) -> None:
        """Remove a recording, wherever it is kept (for whatever deletes calls)."""
        await self._store_of(location).delete(location)


def recordings_from_settings(settings: Settings, *, db: Database, clock: Clock) -> Recordings:
    """The node's :class:`Recordings`, as ``CALLGATE_RECORDINGS_URL`` and ``CALLGATE_S3_*`` say."""
    spool_dir = settings.data_dir / "recordings"
    url = settings.recordings_url or ""
    store: RecordingStore
    if url.startswith("s3://"):
        from callgate.domain.recordings_s3 import S3Store

        store = S3Store.from_settings(settings)
    else:
        if url.startswith("file://"):
            spool_dir = Path(urlsplit(url).path)
        store = LocalStore()
    return Recordings(db=db, clock=clock, spool_dir=spool_dir, store=store)
