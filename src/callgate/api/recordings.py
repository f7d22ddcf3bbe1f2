"""GET /v1/calls/{id}/recording — the stereo WAV (caller left, agent right), from any node.

The recording is streamed through callgate wherever it is kept (this node's disk or an S3 bucket), so
the API key and the team scope the request as any other; one ``Range: bytes=…`` is honoured (206).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.domain.recording_store import ByteRange, RecordingStream

router = APIRouter(tags=["calls"])

RangeHeader = Annotated[str | None, Header(alias="range", include_in_schema=False)]


@router.get(
    "/v1/calls/{call_id}/recording",
    operation_id="getCallRecording",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "16-bit stereo WAV, 16 kHz"},
        206: {"content": {"audio/wav": {}}, "description": "The part a `Range: bytes=…` header asked for"},
        503: {"description": "The recording storage cannot be reached"},
    },
)
async def get_recording(
    call_id: str, principal: SecretPrincipal, runtime: RuntimeDep, range_: RangeHeader = None
) -> StreamingResponse:
    recording = await runtime.recordings.open(
        team_id=principal.team_id, call_id=call_id, byte_range=ByteRange.parse(range_)
    )
    return recording_response(recording, filename=f"{call_id}.wav")


def recording_response(recording: RecordingStream, *, filename: str) -> StreamingResponse:
    """An opened recording as an HTTP response: 200, or 206 with ``Content-Range`` for a range."""
    headers = {
        "Content-Length": str(recording.length),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if recording.partial:
        headers["Content-Range"] = f"bytes {recording.first}-{recording.last}/{recording.size}"
    return StreamingResponse(
        recording.chunks,
        status_code=206 if recording.partial else 200,
        media_type="audio/wav",
        headers=headers,
    )
