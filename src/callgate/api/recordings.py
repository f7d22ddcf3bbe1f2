"""GET /v1/calls/{id}/recording — the stereo WAV (caller left, agent right)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.domain import calls
from callgate.errors import NotFound

router = APIRouter(tags=["calls"])


@router.get(
    "/v1/calls/{call_id}/recording",
    operation_id="getCallRecording",
    response_class=FileResponse,
    responses={200: {"content": {"audio/wav": {}}, "description": "16-bit stereo WAV, 16 kHz"}},
)
async def get_recording(call_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> FileResponse:
    async with runtime.db.read() as s:
        call = await calls.get_call(s, team_id=principal.team_id, call_id=call_id)
    if not call.recording_path or not Path(call.recording_path).is_file():  # noqa: ASYNC240 - one stat
        raise NotFound("this call has no recording")
    return FileResponse(call.recording_path, media_type="audio/wav", filename=f"{call.id}.wav")
