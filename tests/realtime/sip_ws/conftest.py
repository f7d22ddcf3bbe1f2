"""SIP-over-WebSocket tests: a real server, a web call created with transport=sip, a Python UAC."""

from __future__ import annotations

import pytest

from tests.support.live import LiveServer
from tests.support.sip_client import SipCall, new_sip_call
from tests.support.webrtc_client import loopback_ice


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


@pytest.fixture
async def sip_call(live: LiveServer) -> SipCall:
    return await new_sip_call(live)
