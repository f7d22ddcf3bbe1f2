"""SIP trunk tests: a live server listening for SIP on loopback (a free port), RTP on its own range."""

from __future__ import annotations

from pathlib import Path

import pytest

from callgate.config import Settings
from tests.support.services import worker_port_offset
from tests.support.world import make_settings

_OFFSET = worker_port_offset()
CALLGATE_RTP = f"{31000 + _OFFSET}-{31999 + _OFFSET}"
"""callgate's RTP ports in these tests; baresip phones use 30000-30999 (both moved per xdist worker)."""


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{path}",
        public_url=None,
        sip_listen="127.0.0.1:0",
        rtp_ports=CALLGATE_RTP,
        webhooks_allow_private=True,  # the Vocode test's webhook receiver is on loopback
    )
