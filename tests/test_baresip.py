"""The baresip harness: two real baresip phones call each other, talk, press keys and hang up."""

from __future__ import annotations

from pathlib import Path

from tests.support.baresip import Baresip, phone_wav
from tests.support.rtvi_client import nonsilent_seconds


async def test_two_phones_talk_press_keys_and_hang_up(tmp_path: Path) -> None:
    wav = phone_wav("Hello there, this is bob speaking to you.", tmp_path / "bob.wav")
    async with (
        Baresip(tmp_path, user="alice", rtp_ports=(30000, 30099)) as alice,
        Baresip(tmp_path, user="bob", source=wav, rtp_ports=(30100, 30199)) as bob,
    ):
        await alice.dial(bob.uri)
        await alice.wait_event("CALL_ESTABLISHED")
        await bob.wait_event("CALL_ESTABLISHED")
        assert await alice.wait_heard(1.0) >= 1.0
        assert nonsilent_seconds(bob.heard(), 8000) == 0.0  # alice says nothing
        await bob.send_dtmf("7")
        assert (await alice.wait_event("CALL_DTMF_START"))["param"] == "7"
        await alice.hangup()
        await bob.wait_event("CALL_CLOSED")
