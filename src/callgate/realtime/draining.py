"""A node's graceful stop: take no new call, let live calls finish, then end the rest.

On SIGTERM (``app.py`` wires it when uvicorn serves the app) :func:`drain` flips admission control to
refuse every new caller (WebSocket 1013, HTTP and SIP 503 + ``Retry-After``; ``/readyz`` answers 503 so
the load balancer sends new calls elsewhere), waits up to ``timeout_s`` for the node's live sessions to
end on their own, and ends those still running with ``node_shutdown``. Only then does the server stop.
"""

from __future__ import annotations

import logging

from callgate.domain.lifecycle import EndReason
from callgate.realtime.admission import Admission
from callgate.realtime.control import CallControl

log = logging.getLogger(__name__)

END_GRACE_S = 10.0
"""After ending the remaining calls, how long their sessions get to write their end."""


async def drain(*, admission: Admission, control: CallControl, timeout_s: float) -> list[str]:
    """See the module docstring. Returns the ids of the calls it had to end."""
    admission.draining = True
    live = control.live_count
    log.info("draining: %d live calls may finish within %.0f s; no new calls", live, timeout_s)
    ended: list[str] = []
    if not await control.wait_idle(timeout_s):
        ended = control.live_call_ids
        for call_id in ended:
            await control.deliver_end(call_id, EndReason.NODE_SHUTDOWN)
        await control.wait_idle(END_GRACE_S)
    log.info("drained: %d calls finished on their own, %d ended", live - len(ended), len(ended))
    return ended
