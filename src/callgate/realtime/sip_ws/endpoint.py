"""Mounts SIP over WebSocket (RFC 7118) at ``/sip``: the ``ws_url`` of a web call created with transport=sip.

A client must offer the ``sip`` subprotocol; without it the handshake is refused (HTTP 403). Each frame
is one SIP message, handled by the connection's :class:`SipConnection`; when the socket closes, the
connection's calls end as ``transport_lost`` (a softphone that hangs up properly sends BYE first).
See ``docs/sip.md``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from callgate.realtime.sip_ws.connection import SipConnection
from callgate.realtime.sip_ws.socket import SUBPROTOCOL, SipSocket, SocketClosed
from callgate.realtime.start import CallStarter

log = logging.getLogger(__name__)
router = APIRouter()


@router.websocket("/sip")
async def sip_websocket(ws: WebSocket) -> None:
    starter: CallStarter = ws.app.state.call_starter
    if SUBPROTOCOL not in ws.scope.get("subprotocols", []):
        await ws.close(code=1002, reason="the 'sip' WebSocket subprotocol is required (RFC 7118)")
        return
    await ws.accept(subprotocol=SUBPROTOCOL)
    socket = SipSocket(ws)
    connection = SipConnection(starter, socket.send, secure=ws.url.scheme == "wss")
    try:
        while True:
            await connection.handle(await socket.receive())
    except SocketClosed as exc:
        log.info("sip websocket closed (%d)", exc.code)
    finally:
        await connection.close()
        await socket.close()
