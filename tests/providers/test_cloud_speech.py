"""Cloud STT/TTS engines against local fakes speaking each vendor's wire protocol, error frames
included: Deepgram live streaming, an OpenAI-compatible transcription and speech server, ElevenLabs
input streaming and Cartesia's WebSocket."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from callgate.errors import ProviderAuthFailed, ProviderError, ProviderUnavailable
from callgate.providers.cartesia import CartesiaTTS
from callgate.providers.deepgram import DeepgramSTT
from callgate.providers.elevenlabs import ElevenLabsTTS
from callgate.providers.openai import OpenAISTT, OpenAITTS
from tests.support.fake_speech_vendors import (
    KEY,
    FakeCartesia,
    FakeDeepgram,
    FakeElevenLabs,
    FakeOpenAIAudio,
    pcm_chunk,
)

SPEECH = b"".join(pcm_chunk(16000, i) for i in range(50))  # one second at 16 kHz


def deepgram(fake: FakeDeepgram, key: str = KEY) -> DeepgramSTT:
    return DeepgramSTT(api_key=SecretStr(key), base_url=fake.base_url, timeout=5)


async def test_deepgram_streams_interim_results_and_a_final_transcript(fake_deepgram: FakeDeepgram) -> None:
    stream = deepgram(fake_deepgram).stream(language="de")
    interims = []
    try:
        for i in range(0, len(SPEECH), 640):
            stream.push(SPEECH[i : i + 640])
        result = await stream.finish()
    finally:
        await stream.aclose()
    async for interim in stream.interim():  # what was received, ending with the closed stream
        interims.append(interim)
    assert result.text == "I would like to book a table" and result.confidence == pytest.approx(0.93)
    assert any(not t.is_final for t in interims) and interims[-1].text == result.text
    assert stream.endpointed  # Deepgram's speech_final
    query = fake_deepgram.query[0]
    assert query["encoding"] == "linear16" and query["sample_rate"] == "16000" and query["language"] == "de"
    assert query["interim_results"] == "true" and query["model"] == "nova-3"
    assert sum(n for n in fake_deepgram.received if isinstance(n, int)) == len(SPEECH)
    assert {"type": "Finalize"} in fake_deepgram.received and {
        "type": "CloseStream"
    } in fake_deepgram.received


async def test_deepgram_refused_key_and_error_close_frames(fake_deepgram: FakeDeepgram) -> None:
    with pytest.raises(ProviderAuthFailed, match="Invalid credentials"):
        await deepgram(fake_deepgram, "wrong").transcribe(SPEECH)
    fake_deepgram.mode = "error"
    with pytest.raises(ProviderError, match=r"1008.*DATA-0000"):
        await deepgram(fake_deepgram).transcribe(SPEECH)


async def test_deepgram_unreachable() -> None:
    stt = DeepgramSTT(api_key=SecretStr(KEY), base_url="ws://127.0.0.1:9", timeout=2)
    with pytest.raises(ProviderUnavailable):
        await stt.transcribe(SPEECH)


async def test_openai_compatible_transcription(fake_openai_audio: FakeOpenAIAudio) -> None:
    stt = OpenAISTT(model="whisper-large-v3", base_url=fake_openai_audio.base_url, api_key=SecretStr(KEY))
    try:
        result = await stt.transcribe(SPEECH, language="es-MX")
        assert result.text == "I would like to book a table"
        sent = fake_openai_audio.received[0]
        assert sent["model"] == "whisper-large-v3" and sent["language"] == "es"
        assert sent["file"][:4] == b"RIFF" and sent["file"].endswith(SPEECH)
        assert "prompt" not in sent and stt.capabilities.prompt
        await stt.transcribe(SPEECH, prompt="Uh-huh. Mm-hmm.")  # a short word over the agent, again
        assert fake_openai_audio.received[1]["prompt"] == "Uh-huh. Mm-hmm."
        fake_openai_audio.mode = "error"
        with pytest.raises(ProviderUnavailable, match="The server had an error"):
            await stt.transcribe(SPEECH)
    finally:
        await stt.aclose()
    bad = OpenAISTT(base_url=fake_openai_audio.base_url, api_key=SecretStr("wrong"))
    try:
        with pytest.raises(ProviderAuthFailed, match="Incorrect API key"):
            await bad.transcribe(SPEECH)
    finally:
        await bad.aclose()


async def test_openai_compatible_speech_streams_whole_samples(fake_openai_audio: FakeOpenAIAudio) -> None:
    tts = OpenAITTS(voice="nova", base_url=fake_openai_audio.base_url, api_key=SecretStr(KEY), speed=1.1)
    try:
        chunks = [c async for c in tts.synthesize("Hello there.")]
        assert all(len(c) % 2 == 0 for c in chunks)
        assert b"".join(chunks) == b"".join(pcm_chunk(24000, i) for i in range(3))
        assert fake_openai_audio.received[0] == {
            "model": "tts-1",
            "input": "Hello there.",
            "voice": "nova",
            "response_format": "pcm",
            "speed": 1.1,
        }
        fake_openai_audio.mode = "error"
        with pytest.raises(ProviderUnavailable):
            [c async for c in tts.synthesize("Hello.")]
    finally:
        await tts.aclose()


async def test_elevenlabs_input_streaming(fake_elevenlabs: FakeElevenLabs) -> None:
    tts = ElevenLabsTTS(
        api_key=SecretStr(KEY),
        voice_id="v1",
        base_url=fake_elevenlabs.base_url,
        language="fr-FR",
        stability=0.4,
    )
    chunks = [c async for c in tts.synthesize("Bonjour.")]
    assert b"".join(chunks) == b"".join(pcm_chunk(16000, i) for i in range(3))
    query = fake_elevenlabs.query[0]
    assert query["voice"] == "v1" and query["output_format"] == "pcm_16000" and query["language_code"] == "fr"
    assert fake_elevenlabs.received == [
        {"text": " ", "voice_settings": {"stability": 0.4}},
        {"text": "Bonjour. ", "flush": True},
        {"text": ""},
    ]
    fake_elevenlabs.mode = "error"
    with pytest.raises(ProviderError, match="quota_exceeded"):
        [c async for c in tts.synthesize("Encore.")]
    bad = ElevenLabsTTS(api_key=SecretStr("wrong"), voice_id="v1", base_url=fake_elevenlabs.base_url)
    with pytest.raises(ProviderAuthFailed, match="Invalid API key"):
        [c async for c in bad.synthesize("Hi.")]


async def test_cartesia_websocket(fake_cartesia: FakeCartesia) -> None:
    tts = CartesiaTTS(
        api_key=SecretStr(KEY), voice_id="voice-1", base_url=fake_cartesia.base_url, language="de"
    )
    chunks = [c async for c in tts.synthesize("Guten Tag.")]
    assert b"".join(chunks) == b"".join(pcm_chunk(16000, i) for i in range(3))
    sent = fake_cartesia.received[0]
    assert sent["transcript"] == "Guten Tag." and sent["voice"] == {"mode": "id", "id": "voice-1"}
    assert sent["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
    assert sent["language"] == "de" and sent["continue"] is False
    assert fake_cartesia.headers[0]["cartesia-version"] == "2024-11-13"
    fake_cartesia.mode = "error"
    with pytest.raises(ProviderUnavailable, match="model crashed"):
        [c async for c in tts.synthesize("Noch einmal.")]
    bad = CartesiaTTS(api_key=SecretStr("wrong"), voice_id="voice-1", base_url=fake_cartesia.base_url)
    with pytest.raises(ProviderAuthFailed, match="Invalid API key"):
        [c async for c in bad.synthesize("Hi.")]
