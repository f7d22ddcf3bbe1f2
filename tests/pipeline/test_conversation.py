"""A full scripted turn under virtual time: events, latency breakdown, pacing."""

from __future__ import annotations

import itertools

import pytest

from callgate.pipeline import (
    BotLLMText,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    BotTTSText,
    Metrics,
    PipelineOptions,
    TurnEnded,
    UserTranscription,
)
from callgate.providers.fake import FakeSTT, FakeTTS, FakeVAD, PipelineHarness, ScriptedReply, VirtualClock

REPLY = "Hello there. How can I help you today?"


def frames_of(text: str, tts: FakeTTS, frame_ms: int = 20) -> int:
    return -(-int(tts.duration_ms(text)) // frame_ms)


async def test_full_turn_events_in_order_with_latency_matching_the_script() -> None:
    opts = PipelineOptions(end_of_turn_silence_ms=550, early_end_silence_ms=0)
    async with PipelineHarness(
        transcripts=["I need an appointment"],
        replies=[ScriptedReply(REPLY, first_token_delay=0.2, token_delay=0.02)],
        options=opts,
        stt_delay=0.3,
    ) as h:
        await h.speak(1000)
        last_speech = h.clock.monotonic() - 0.02  # the last speech chunk was pushed one chunk ago
        await h.silence(4000)

        names = [n for n in h.output.names() if n not in {"BotLLMText", "Metrics"}]
        assert names == [
            "UserStartedSpeaking",
            "UserStoppedSpeaking",
            "UserTranscription",
            "TurnEnded",
            "BotStartedSpeaking",
            "BotTTSText",
            "BotTTSText",
            "BotStoppedSpeaking",
            "TurnEnded",
        ]
        assert [e.text for e in h.output.of_type(UserTranscription)] == ["I need an appointment"]
        assert "".join(e.text for e in h.output.of_type(BotLLMText)) == REPLY
        assert [e.text for e in h.output.of_type(BotTTSText)] == ["Hello there.", "How can I help you today?"]
        assert h.agent.respond_calls == ["I need an appointment"]
        assert h.tts is not None
        assert h.tts.requests == ["Hello there.", "How can I help you today?"]
        assert len(h.stt.requests) == 1

        user, agent = (e.record for e in h.output.of_type(TurnEnded))
        assert (user.role, user.text, user.interrupted) == ("user", "I need an appointment", False)
        assert (user.ended_at - user.started_at).total_seconds() == pytest.approx(0.98)
        assert (agent.role, agent.text, agent.interrupted) == ("agent", REPLY, False)
        assert agent.latency is not None
        lat = agent.latency
        assert lat.endpointing_ms == pytest.approx(560)  # 550 ms rounded up to whole 20 ms frames
        assert lat.stt_ms == pytest.approx(300)
        assert lat.agent_first_token_ms == pytest.approx(200)
        assert lat.tts_first_audio_ms == pytest.approx(100)
        # The first sentence is complete with its second token (20 ms after the first).
        assert lat.total_ms == pytest.approx(560 + 300 + 200 + 20 + 100)
        first_frame_at = h.output.audio[0][0]
        assert (first_frame_at - last_speech) * 1000 == pytest.approx(lat.total_ms)
        assert h.output.times_of(BotStartedSpeaking) == [first_frame_at]

        metrics = h.output.of_type(Metrics)
        assert metrics[-1].data["turn"]["total_ms"] == lat.total_ms
        assert h.pipeline.metrics.user_turns == 1
        assert h.pipeline.metrics.agent_turns == 1


async def test_audio_is_paced_in_exact_20ms_frames_without_drift() -> None:
    async with PipelineHarness(transcripts=["hi"], replies=[REPLY]) as h:
        await h.speak(500)
        await h.silence(5000)
        assert h.tts is not None
        times = [t for t, _ in h.output.audio]
        assert all(len(f) == 640 for _, f in h.output.audio)
        expected = frames_of("Hello there.", h.tts) + frames_of("How can I help you today?", h.tts)
        assert len(times) == expected
        # TTS is faster than real time, so the reply is one burst: frame n at start + n * 20 ms.
        for n, t in enumerate(times):
            assert t == pytest.approx(times[0] + n * 0.02, abs=1e-9)
        assert h.pipeline.metrics.late_frames == 0
        stopped = h.output.times_of(BotStoppedSpeaking)
        assert stopped == [pytest.approx(times[-1] + 0.02)]


class OversleepingClock(VirtualClock):
    """Every sleep overshoots, like a busy event loop; ``spike`` adds one long stall."""

    def __init__(self, overshoot: float, spike_at: float | None = None) -> None:
        super().__init__()
        self.overshoot = overshoot
        self.spike_at = spike_at

    async def sleep(self, seconds: float) -> None:
        extra = self.overshoot
        if self.spike_at is not None and self.monotonic() >= self.spike_at:
            extra, self.spike_at = 0.1, None
        await super().sleep(seconds + extra)


async def test_pacing_does_not_accumulate_sleep_overshoot() -> None:
    clock = OversleepingClock(overshoot=0.005)
    async with PipelineHarness(
        clock=clock, greeting=ScriptedReply("Welcome to the clinic, how may I help?", first_token_delay=0)
    ) as h:
        await h.wait(5000)
        times = [t for t, _ in h.output.audio]
        assert len(times) > 50
        # sleep(0.02) per frame would drift by 5 ms a frame; scheduling from the start does not.
        drift = times[-1] - (times[0] + (len(times) - 1) * 0.02)
        assert 0 <= drift <= 0.006
        assert h.pipeline.metrics.late_frames == 0


async def test_a_stall_counts_one_late_frame_and_re_anchors() -> None:
    clock = OversleepingClock(overshoot=0.0, spike_at=0.5)
    async with PipelineHarness(
        clock=clock, greeting=ScriptedReply("Welcome to the clinic, how may I help?", first_token_delay=0)
    ) as h:
        await h.wait(5000)
        times = [t for t, _ in h.output.audio]
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
        assert h.pipeline.metrics.late_frames == 1
        assert h.pipeline.metrics.max_output_lag_ms == pytest.approx(100, abs=1)
        assert max(gaps) == pytest.approx(0.12)
        assert sorted(set(gaps)) == [0.02, 0.12]  # no burst of catch-up frames after the stall


async def test_greeting_plays_at_start_and_is_recorded() -> None:
    async with PipelineHarness(greeting=ScriptedReply("Hi, this is Acme.", first_token_delay=0.15)) as h:
        await h.wait(3000)
        (turn,) = h.output.of_type(TurnEnded)
        assert turn.record.text == "Hi, this is Acme."
        assert turn.record.latency is not None
        assert turn.record.latency.agent_first_token_ms == pytest.approx(150)
        assert turn.record.latency.endpointing_ms is None
        assert turn.record.latency.total_ms is None
        assert len(h.output.audio) == 17 * 50 // 20 + 1


async def test_noise_and_empty_transcripts_are_ignored() -> None:
    async with PipelineHarness(transcripts=["", "second"], replies=["Answer."]) as h:
        await h.speak(60)  # a click: shorter than min_speech_ms
        await h.silence(1000)
        assert "UserStartedSpeaking" not in h.output.names()
        await h.speak(400)  # transcribed as "" (silence / unintelligible)
        await h.silence(1500)
        assert h.output.names() == ["UserStartedSpeaking", "UserStoppedSpeaking"]
        assert h.agent.respond_calls == []
        await h.speak(400)
        await h.silence(3000)
        assert h.agent.respond_calls == ["second"]


async def test_streaming_stt_sends_interim_results_and_closes_the_stream() -> None:
    clock = VirtualClock()
    stt = FakeSTT(clock, ["book a table"], delay=0.05, streaming=True)
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."]) as h:
        await h.speak(600)
        await h.silence(2500)
        results = h.output.of_type(UserTranscription)
        assert [(r.text, r.final) for r in results] == [("book", False), ("book a table", True)]
        (stream,) = stt.streams
        assert stream.closed
        # Pre-roll + 600 ms of speech + trailing silence until the turn ended, all streamed.
        assert len(stt.requests[0]) >= 600 * 32
        turn = h.output.of_type(TurnEnded)[-1].record
        assert turn.latency is not None
        assert turn.latency.stt_ms == pytest.approx(50)


async def test_input_overflow_drops_the_oldest_audio_and_counts_it() -> None:
    async with PipelineHarness(options=PipelineOptions(max_input_buffer_ms=1000)) as h:
        for _ in range(150):  # 3 s pushed while the event loop never gets to run
            h.pipeline.push_audio(bytes(640))
        assert h.pipeline.metrics.input_dropped_chunks == 100
        assert h.pipeline.metrics.input_dropped_ms == pytest.approx(2000)
        await h.wait(20)
        assert h.pipeline.metrics.input_chunks == 150


async def test_last_activity_follows_caller_speech_and_agent_audio() -> None:
    async with PipelineHarness(transcripts=["hi"], replies=["Hello."]) as h:
        await h.silence(1000)
        assert h.pipeline.last_activity == 0.0
        await h.speak(300)
        assert h.pipeline.last_activity == pytest.approx(1.28)  # arrival of the last speech chunk
        await h.silence(3000)
        assert h.pipeline.last_activity == pytest.approx(h.output.audio[-1][0])


async def test_a_turn_ends_even_if_the_transport_stops_sending_audio() -> None:
    async with PipelineHarness(transcripts=["hello"], replies=["Hi."]) as h:
        await h.speak(600)
        await h.wait(2000)  # no audio at all, e.g. the client muted or uses DTX
        assert h.output.names()[:3] == ["UserStartedSpeaking", "UserStoppedSpeaking", "UserTranscription"]
        turn = h.output.of_type(TurnEnded)[-1].record
        assert turn.role == "agent"
        assert turn.latency is not None and turn.latency.endpointing_ms is not None
        assert 550 <= turn.latency.endpointing_ms <= 700


async def test_engines_at_other_sample_rates_get_resampled_audio() -> None:
    clock = VirtualClock()
    stt = FakeSTT(clock, ["hi"], delay=0.1, sample_rate=8000)
    tts = FakeTTS(clock, sample_rate=22050)
    opts = PipelineOptions(output_sample_rate=48000, transcribe_pause_ms=0)
    vad = FakeVAD(sample_rate=8000, frame_samples=256)  # 32 ms frames, like Silero
    async with PipelineHarness(
        clock=clock, vad=vad, stt=stt, tts=tts, options=opts, replies=["Hello there."]
    ) as h:
        await h.speak(600)
        await h.silence(3000)
        (utterance,) = stt.requests
        # 600 ms of speech + 200 ms of trailing silence (no pre-roll: speech started the call), at 8 kHz,
        # plus up to ~50 ms by which a 32 ms VAD (fed through a resampler) sees the end of speech late.
        assert 0.8 * 8000 * 2 <= len(utterance) <= 0.85 * 8000 * 2
        assert vad.streams[0].frames == pytest.approx(h.clock.monotonic() / 0.032, abs=1)
        assert all(len(frame) == 48000 * 20 // 1000 * 2 for _, frame in h.output.audio)
        assert len(h.output.audio) == 600 // 20  # "Hello there." = 12 chars * 50 ms
