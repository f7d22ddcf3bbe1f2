"""Fallback per stage, with real engines against local vendor fakes: the first engine fails at start
(refused key, deleted credential) or mid-call (an error frame, an error answer, no first result in
time), the call goes on with the next engine, and each switch is recorded."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from callgate.pipeline.interfaces import ChatMessage
from callgate.providers.fallback import FallbackLLM, FallbackSTT, FallbackTTS, SwitchLog
from callgate.providers.registry import EngineRegistry
from callgate.providers.settings import Role
from tests.support.fake_anthropic import KEY as ANTHROPIC_KEY
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_anthropic import Reply as AnthropicReply
from tests.support.fake_anthropic import text_events as anthropic_text
from tests.support.fake_openai import FakeOpenAI, Reply, text_events
from tests.support.fake_speech_vendors import (
    KEY,
    FakeCartesia,
    FakeDeepgram,
    FakeElevenLabs,
    FakeOpenAIAudio,
    pcm_chunk,
)

SPEECH = b"".join(pcm_chunk(16000, i) for i in range(40))
CREDENTIALS = {
    "pcred_good": SecretStr(KEY),
    "pcred_bad": SecretStr("revoked"),
    "pcred_claude": SecretStr(ANTHROPIC_KEY),
}


def build(role: Role, settings: dict[str, Any], registry: EngineRegistry, log: SwitchLog) -> Any:
    candidates = registry.candidates(role, settings, credentials=CREDENTIALS, language="en")
    timeout = registry.stage(role, settings).first_result_timeout_s
    kind = {"stt": FallbackSTT, "tts": FallbackTTS, "llm": FallbackLLM}[role]
    return kind(candidates, switches=log, first_result_timeout_s=timeout)


async def utterance(stt: FallbackSTT) -> str:
    """As the pipeline does: stream if the current engine streams, else transcribe in one go."""
    if not stt.capabilities.streaming:
        return (await stt.transcribe(SPEECH)).text
    stream = stt.stream(language="en")
    try:
        for i in range(0, len(SPEECH), 640):
            stream.push(SPEECH[i : i + 640])
        return (await stream.finish()).text
    finally:
        await stream.aclose()


def moves(log: SwitchLog) -> list[tuple[str, str, str, bool]]:
    return [(s.role, s.from_engine, s.to_engine, s.at_start) for s in log.switches]


async def test_stt_falls_back_at_start_and_mid_call(
    fake_deepgram: FakeDeepgram, fake_openai_audio: FakeOpenAIAudio
) -> None:
    registry = EngineRegistry()
    openai_stt = {"engine": "openai", "base_url": fake_openai_audio.base_url, "credential_id": "pcred_good"}
    fake_openai_audio.text = "heard by the fallback"
    try:
        # At start: Deepgram refuses the key; the utterance is transcribed by the next engine.
        log = SwitchLog()
        stt = build(
            "stt",
            {
                "engine": "deepgram",
                "base_url": fake_deepgram.base_url,
                "credential_id": "pcred_bad",
                "fallback": [openai_stt],
            },
            registry,
            log,
        )
        assert await utterance(stt) == "heard by the fallback"
        assert moves(log) == [("stt", "deepgram", "openai", True)]
        assert "Invalid credentials" in log.switches[0].reason
        assert await utterance(stt) == "heard by the fallback"  # and stays there
        assert fake_deepgram.connections == 1

        # Mid-call: the first utterance is Deepgram's; then it closes with a DATA error frame and the
        # same utterance's audio goes to the next engine.
        log = SwitchLog()
        stt = build(
            "stt",
            {
                "engine": "deepgram",
                "base_url": fake_deepgram.base_url,
                "credential_id": "pcred_good",
                "fallback": [openai_stt],
            },
            registry,
            log,
        )
        assert await utterance(stt) == "I would like to book a table"
        fake_deepgram.mode = "error"
        assert await utterance(stt) == "heard by the fallback"
        assert moves(log) == [("stt", "deepgram", "openai", False)]
        assert "DATA-0000" in log.switches[0].reason
        assert fake_openai_audio.received[-1]["file"].endswith(SPEECH)
    finally:
        await registry.aclose()


async def test_stt_that_never_answers_times_out_to_the_next(
    fake_deepgram: FakeDeepgram, fake_openai_audio: FakeOpenAIAudio
) -> None:
    registry = EngineRegistry()
    fake_deepgram.mode = "silent"
    log = SwitchLog()
    stt = build(
        "stt",
        {
            "engine": "deepgram",
            "base_url": fake_deepgram.base_url,
            "credential_id": "pcred_good",
            "first_result_timeout_s": 0.5,
            "fallback": [
                {"engine": "openai", "credential_id": "pcred_good", "base_url": fake_openai_audio.base_url}
            ],
        },
        registry,
        log,
    )
    try:
        assert await utterance(stt) == "I would like to book a table"
        assert (
            moves(log) == [("stt", "deepgram", "openai", True)]
            and log.switches[0].reason == "no first result in time"
        )
    finally:
        await registry.aclose()


async def test_tts_falls_back_at_start_and_mid_call(
    fake_elevenlabs: FakeElevenLabs, fake_cartesia: FakeCartesia, fake_openai_audio: FakeOpenAIAudio
) -> None:
    registry = EngineRegistry()
    cartesia = {
        "engine": "cartesia",
        "voice_id": "v",
        "base_url": fake_cartesia.base_url,
        "credential_id": "pcred_good",
    }
    openai_tts = {"engine": "openai", "base_url": fake_openai_audio.base_url, "credential_id": "pcred_good"}
    try:
        # At start: ElevenLabs' credential was deleted (not in the plan) -> Cartesia speaks.
        log = SwitchLog()
        tts = build(
            "tts",
            {
                "engine": "elevenlabs",
                "voice_id": "v",
                "base_url": fake_elevenlabs.base_url,
                "credential_id": "pcred_deleted",
                "fallback": [cartesia],
            },
            registry,
            log,
        )
        audio = b"".join([c async for c in tts.synthesize("Hello.")])
        assert audio == b"".join(pcm_chunk(16000, i) for i in range(3))
        assert (
            moves(log) == [("tts", "elevenlabs", "cartesia", True)]
            and "pcred_deleted" in log.switches[0].reason
        )
        assert fake_elevenlabs.connections == 0

        # Mid-call: ElevenLabs speaks, then stops answering; the sentence is spoken by the OpenAI-compatible
        # server instead (its 24 kHz resampled to the call's 16 kHz).
        log = SwitchLog()
        tts = build(
            "tts",
            {
                "engine": "elevenlabs",
                "voice_id": "v",
                "base_url": fake_elevenlabs.base_url,
                "credential_id": "pcred_good",
                "first_result_timeout_s": 0.5,
                "fallback": [openai_tts],
            },
            registry,
            log,
        )
        assert tts.capabilities.sample_rate == 16000
        first = b"".join([c async for c in tts.synthesize("One.")])
        assert first == b"".join(pcm_chunk(16000, i) for i in range(3)) and log.switches == []
        fake_elevenlabs.mode = "silent"
        second = b"".join([c async for c in tts.synthesize("Two.")])
        assert abs(len(second) - 3 * 640) <= 64  # 60 ms at 16 kHz, from 24 kHz
        assert moves(log) == [("tts", "elevenlabs", "openai", False)]
        assert fake_openai_audio.received[-1]["input"] == "Two."
    finally:
        await registry.aclose()


async def test_tts_error_frame_mid_sentence_moves_the_next_sentence(
    fake_cartesia: FakeCartesia, fake_openai_audio: FakeOpenAIAudio
) -> None:
    registry = EngineRegistry()
    log = SwitchLog()
    tts = build(
        "tts",
        {
            "engine": "cartesia",
            "voice_id": "v",
            "base_url": fake_cartesia.base_url,
            "credential_id": "pcred_good",
            "fallback": [
                {
                    "engine": "openai",
                    "credential_id": "pcred_good",
                    "base_url": fake_openai_audio.base_url,
                    "sample_rate": 16000,
                }
            ],
        },
        registry,
        log,
    )
    try:
        fake_cartesia.mode = "error"  # one chunk, then an error message
        cut = b"".join([c async for c in tts.synthesize("A long sentence.")])
        assert cut == pcm_chunk(16000, 0)
        assert (
            moves(log) == [("tts", "cartesia", "openai", False)] and "model crashed" in log.switches[0].reason
        )
        nxt = b"".join([c async for c in tts.synthesize("The next one.")])
        assert nxt and fake_openai_audio.received[-1]["input"] == "The next one."
    finally:
        await registry.aclose()


async def test_llm_falls_back_at_start_and_mid_call(
    fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI
) -> None:
    registry = EngineRegistry()
    openai = {"engine": "openai", "model": "m", "base_url": fake_openai.base_url}
    history = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
    try:
        # At start: Anthropic refuses the key; the question goes to the OpenAI-compatible server.
        log = SwitchLog()
        llm = build(
            "llm",
            {
                "engine": "anthropic",
                "model": "claude",
                "base_url": fake_anthropic.base_url,
                "credential_id": "pcred_bad",
                "fallback": [openai],
            },
            registry,
            log,
        )
        fake_openai.replies.append(Reply(events=text_events("From the fallback.")))
        assert "".join([c.text async for c in llm.chat(history)]) == "From the fallback."
        assert (
            moves(log) == [("llm", "anthropic", "openai", True)]
            and "invalid x-api-key" in log.switches[0].reason
        )

        # Mid-call: the OpenAI-compatible server answers a turn, then fails with a 500 -> Claude.
        log = SwitchLog()
        llm = build(
            "llm",
            {
                **openai,
                "fallback": [
                    {
                        "engine": "anthropic",
                        "model": "claude",
                        "base_url": fake_anthropic.base_url,
                        "credential_id": "pcred_claude",
                    }
                ],
            },
            registry,
            log,
        )
        fake_openai.replies.append(Reply(events=text_events("Turn one.")))
        assert "".join([c.text async for c in llm.chat(history)]) == "Turn one."
        fake_openai.replies.append(Reply(status=500, error="upstream exploded"))
        fake_anthropic.replies.clear()
        fake_anthropic.replies.append(AnthropicReply(events=anthropic_text("Turn two, from Claude.")))
        assert "".join([c.text async for c in llm.chat(history)]) == "Turn two, from Claude."
        assert (
            moves(log) == [("llm", "openai", "anthropic", False)]
            and "upstream exploded" in log.switches[0].reason
        )
    finally:
        await registry.aclose()


async def test_tts_prefetch_goes_to_the_engine_in_use_and_its_cache(fake_cartesia: FakeCartesia) -> None:
    import asyncio

    registry = EngineRegistry(tts_cache_bytes=1 << 24)
    cartesia = {
        "engine": "cartesia",
        "voice_id": "v",
        "base_url": fake_cartesia.base_url,
        "credential_id": "pcred_good",
    }
    tts = build("tts", {**cartesia, "fallback": [{**cartesia, "voice_id": "w"}]}, registry, SwitchLog())
    assert registry.tts_cache is not None and len(registry.tts_cache) == 0
    tts.prefetch("Hello.")
    for _ in range(500):
        if len(registry.tts_cache):
            break
        await asyncio.sleep(0.01)
    assert len(registry.tts_cache) == 1
    hits = registry.tts_cache.hits
    audio = b"".join([c async for c in tts.synthesize("Hello.")])
    assert audio == b"".join(pcm_chunk(16000, i) for i in range(3))
    assert registry.tts_cache.hits == hits + 1  # played from what was synthesised ahead
