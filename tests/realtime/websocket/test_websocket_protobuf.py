"""pipecat's protobuf framing (``?format=protobuf``): the hand-written codec checked against Google's
protobuf runtime, hostile frames, and calls over a real server speaking only pipecat ``Frame``\\s."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from callgate.realtime.websocket import protobuf as pb
from tests.support.live import LiveServer, settled_status
from tests.support.rtvi_client import rtvi

# ---------------------------------------------------------------- the codec

u64 = st.integers(min_value=0, max_value=2**64 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
frames = st.one_of(
    st.builds(pb.TextFrame, text=st.text(), id=u64, name=st.text(max_size=20)),
    st.builds(
        pb.AudioRawFrame,
        audio=st.binary(max_size=2000),
        sample_rate=u32,
        num_channels=u32,
        id=u64,
        name=st.text(max_size=20),
        pts=st.none() | u64,
    ),
    st.builds(pb.TranscriptionFrame, text=st.text(), user_id=st.text(), timestamp=st.text(), id=u64),
    st.builds(pb.MessageFrame, data=st.text()),
)


@given(frames)
def test_every_frame_survives_a_round_trip(frame: pb.Frame) -> None:
    assert pb.decode(pb.encode(frame)) == frame


def _google_frame_class() -> Any:
    """``pipecat.Frame`` built by Google's protobuf runtime from frames.proto's schema: an independent
    implementation of the same wire format."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    fdp = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="frames_test.proto", package="pipecat", syntax="proto3")

    def add(name: str, fields: list[tuple[str, int, int, str | None]], oneof: bool = False) -> None:
        msg = proto.message_type.add(name=name)
        if oneof:
            msg.oneof_decl.add(name="frame")
        for field_name, number, kind, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=fdp.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
            if oneof:
                field.oneof_index = 0
            if field_name == "pts":
                msg.oneof_decl.add(name="_pts")
                field.oneof_index = len(msg.oneof_decl) - 1
                field.proto3_optional = True

    u64_, u32_, s, b, m = fdp.TYPE_UINT64, fdp.TYPE_UINT32, fdp.TYPE_STRING, fdp.TYPE_BYTES, fdp.TYPE_MESSAGE
    add("TextFrame", [("id", 1, u64_, None), ("name", 2, s, None), ("text", 3, s, None)])
    add(
        "AudioRawFrame",
        [
            ("id", 1, u64_, None),
            ("name", 2, s, None),
            ("audio", 3, b, None),
            ("sample_rate", 4, u32_, None),
            ("num_channels", 5, u32_, None),
            ("pts", 6, u64_, None),
        ],
    )
    add(
        "TranscriptionFrame",
        [
            ("id", 1, u64_, None),
            ("name", 2, s, None),
            ("text", 3, s, None),
            ("user_id", 4, s, None),
            ("timestamp", 5, s, None),
        ],
    )
    add("MessageFrame", [("data", 1, s, None)])
    add(
        "Frame",
        [
            ("text", 1, m, ".pipecat.TextFrame"),
            ("audio", 2, m, ".pipecat.AudioRawFrame"),
            ("transcription", 3, m, ".pipecat.TranscriptionFrame"),
            ("message", 4, m, ".pipecat.MessageFrame"),
        ],
        oneof=True,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("pipecat.Frame"))


def test_google_protobuf_reads_what_we_write_and_we_read_what_it_writes() -> None:
    frame_class = _google_frame_class()
    ours = pb.audio(b"\x01\x02" * 320, 24000)
    theirs = frame_class.FromString(ours)
    assert theirs.WhichOneof("frame") == "audio"
    assert (theirs.audio.audio, theirs.audio.sample_rate, theirs.audio.num_channels) == (
        b"\x01\x02" * 320,
        24000,
        1,
    )
    assert theirs.audio.name == "audio" and not theirs.audio.HasField("pts")

    message = json.dumps({"label": "rtvi-ai", "type": "bot-ready", "data": {"é": "✓"}})
    assert frame_class.FromString(pb.message(message)).message.data == message

    written = frame_class()
    written.transcription.text = "hello"
    written.transcription.user_id = "u1"
    written.transcription.id = 2**63 + 5
    assert pb.decode(written.SerializeToString()) == pb.TranscriptionFrame(
        text="hello", user_id="u1", id=2**63 + 5
    )
    written = frame_class()
    written.audio.audio = b"\x00\x01"
    written.audio.sample_rate = 16000
    written.audio.num_channels = 1
    written.audio.pts = 7
    assert pb.decode(written.SerializeToString()) == pb.AudioRawFrame(
        audio=b"\x00\x01", sample_rate=16000, num_channels=1, pts=7
    )


@given(frames)
@settings(max_examples=50)
def test_google_protobuf_agrees_on_every_frame(frame: pb.Frame) -> None:
    frame_class = _google_frame_class()
    assert pb.decode(frame_class.FromString(pb.encode(frame)).SerializeToString()) == frame


@given(st.binary(max_size=300))
def test_hostile_bytes_decode_or_raise_frame_error_only(data: bytes) -> None:
    with contextlib.suppress(pb.FrameError):
        pb.decode(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "none of"),
        (b"\x12", "truncated"),  # audio member, length missing
        (b"\x12\x05\x1a\x10", "past the end"),  # audio bytes longer than the frame
        (b"\x12" + b"\xff" * 11, "varint"),  # a length that never ends
        (b"\x12\x02\x18\x01", "wrong wire type"),  # audio.audio as a varint
        (b"\x22\x03\x0a\x01\xff", "UTF-8"),  # message.data not UTF-8
        (b"\x0b", "wire type"),  # a group start
        (b"\x10\x01", "wrong wire type"),  # the audio member as a varint
        (b"\x22" + b"\x80\x80\x80\x80\x10", "past the end"),  # a 4 GiB length
        (b"\x12\x02\x00\x00", "field number 0"),
        (b"\x22" + bytes([0xFF] * 9 + [0x7F]), "varint over 64 bits"),
        (bytes(pb.MAX_FRAME_BYTES + 1), "too large"),
    ],
)
def test_malformed_frames_are_named(data: bytes, why: str) -> None:
    with pytest.raises(pb.FrameError, match=why):
        pb.decode(data)


def test_unknown_fields_and_members_are_skipped() -> None:
    # field 9 (varint) inside MessageFrame, a fixed64 and a fixed32 in AudioRawFrame, member 7 of Frame
    message = b"\x22\x06\x48\x01\x0a\x02hi"
    assert pb.decode(message) == pb.MessageFrame(data="hi")
    audio = b"\x12\x11\x39" + bytes(8) + b"\x3d" + bytes(4) + b"\x20\x80\x7d"
    assert pb.decode(audio) == pb.AudioRawFrame(audio=b"", sample_rate=16000, num_channels=0)
    assert pb.decode(b"\x3a\x00" + message) == pb.MessageFrame(data="hi")


# ---------------------------------------------------------------- on a real server


class PipecatSocket:
    """A client that speaks pipecat's protobuf frames, as ``@pipecat-ai/websocket-transport`` does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.audio = bytearray()
        self.rates: set[int] = set()

    async def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        await self.ws.send(pb.message(rtvi(type_, data)))

    async def next(self, type_: str, *, timeout: float = 15) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.ws.recv()
                assert isinstance(raw, bytes), "format=protobuf sends binary frames only"
                frame = pb.decode(raw)
                if isinstance(frame, pb.AudioRawFrame):
                    self.audio += frame.audio
                    self.rates.add(frame.sample_rate)
                    continue
                assert isinstance(frame, pb.MessageFrame)
                msg: dict[str, Any] = json.loads(frame.data)
                if msg["type"] == type_:
                    return msg


async def test_text_call_in_pipecat_frames(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(f"{call['websocket_url']}&format=protobuf") as ws:
        client = PipecatSocket(ws)
        await client.send("client-ready", {"version": "2.1.0", "about": {"library": "@pipecat-ai/client-js"}})
        ready = await client.next("bot-ready")
        assert ready["data"]["call_id"] == call["id"]
        assert ready["data"]["audio"]["output_sample_rate"] == 24000  # pipecat's player rate
        assert "Maple Street" in (await client.next("bot-tts-text"))["data"]["text"]
        booking = "I would like to book an appointment for tomorrow at three"
        await client.send("send-text", {"content": booking})
        said = await client.next("bot-tts-text", timeout=20)
        while "tomorrow" not in said["data"]["text"].lower():
            said = await client.next("bot-tts-text", timeout=20)
        await client.send("disconnect-bot")
        ended = await client.next("server-message")
        assert ended["data"] == {"type": "call-ended", "reason": "caller_hangup"}
    assert ws.close_code == 1000
    assert await settled_status(live, team.auth(), str(call["id"])) == "ended"


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (b"\x12\x05\x1a\x10", 4400, "not a pipecat protobuf frame"),
        ("a text frame", 4400, "binary messages"),
        (pb.audio(b"\x00" * 640, 48000), 4400, "16 kHz mono"),
        (pb.encode(pb.AudioRawFrame(audio=b"\x00" * 3, sample_rate=16000, num_channels=1)), 4400, "PCM16"),
        (pb.message("{not json"), 4400, "not JSON"),
        (pb.audio(b"\x00" * 64_002, 16000), 1009, "too large"),
    ],
)
async def test_hostile_frames_close_the_call_clearly(
    live: LiveServer, frame: bytes | str, code: int, reason: str
) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(f"{call['websocket_url']}&format=protobuf", max_size=2**20) as ws:
        client = PipecatSocket(ws)
        await client.send("client-ready", {"version": "2.1.0"})
        await client.next("bot-ready")
        await ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == code
    assert ws.close_reason and reason in ws.close_reason
    assert await settled_status(live, team.auth(), str(call["id"])) == "ended"
    # the server is still well
    assert (await live.world.client.get("/healthz")).status_code == 200


async def test_an_unknown_format_is_refused_before_the_token_is_spent(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    for bad in ("&format=xml", "&format=protobuf&output_sample_rate=11025"):
        async with websockets.connect(f"{call['websocket_url']}{bad}") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4400 and ws.close_reason and "format must be" in ws.close_reason
    async with websockets.connect(f"{call['websocket_url']}&format=protobuf&output_sample_rate=16000") as ws:
        client = PipecatSocket(ws)
        await client.send("client-ready", {"version": "2.1.0"})
        ready = await client.next("bot-ready")
        assert ready["data"]["audio"]["output_sample_rate"] == 16000
        await client.send("disconnect-bot")
        await client.next("server-message")
