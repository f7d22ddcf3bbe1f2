"""Voice-to-voice latency of a web call, measured at the client, over WebSocket and over WebRTC.

    python bench/latency.py                      # both transports, 3 calls x 7 turns each (~6 min)
    python bench/latency.py --transport webrtc   # one transport (prints only: the section compares both)
    python bench/latency.py --quick              # 1 call per transport (~1 min each); nothing written
    python bench/latency.py --quick --turns 1    # the CI smoke configuration (~40 s)
    python bench/latency.py --transport websocket --llm   # also a prompt agent on a fake LLM (~4 min)

What it does: starts ``callgate serve`` in a subprocess (default engines: Silero VAD, faster-whisper
tiny.en, piper), creates the demo clinic flow agent through the REST API, and makes voice calls. The
client streams a microphone: 20 ms frames of 16 kHz PCM16 in real time, a quiet room (-60 dBFS noise)
between utterances. It waits for the greeting to play out, then speaks each line of a conversation the
flow understands (piper speech, the server's own voice) and waits until the agent's answer has played
before it speaks again. Each conversation is held over WebSocket, then over WebRTC, against the same
server: calls alternate between the transports, so both see the same machine and the same load.

* WebSocket: RTVI JSON text frames, PCM16 binary frames both ways (``output_sample_rate`` 16000).
* WebRTC: an aiortc peer (``bench/_webrtc.py``): the SDP offer is POSTed to the call's
  ``webrtc_offer_url``, RTVI runs on the ``rtvi`` data channel, the microphone is an Opus track (aiortc
  encodes each 20 ms frame, 48 kHz), the agent's audio comes back as Opus at 48 kHz.

Latency of a turn = arrival of the first audible agent audio frame (peak above -60 dBFS; WebRTC sends
silence between replies) - the moment the client handed over the last voiced frame of the utterance (the
last 20 ms frame above -40 dBFS, computed from the audio itself; trailing silence does not count). Over
WebRTC this also includes Opus encoding (client) and decoding (server) of the caller's audio, the server's
inbound reorder buffer (no delay for packets in order), Opus encoding of the agent's audio and the
server's outbound track (no prebuffer: each frame in the first 20 ms slot after it arrives), SRTP and UDP
instead of TCP.
It does not include a client-side playout buffer: agent audio is taken at RTP packet arrival and decoded
there (libopus); what aiortc's own receive path (a jitter buffer that prefetches 4 packets, a decoder
thread) adds on top is a row of its own. The per-stage breakdown is the server's own (``metrics`` RTVI
message per agent turn, cross-checked with ``GET /v1/calls/{id}``), plus two client-side marks
(``user-stopped-speaking`` and the final ``user-transcription``). A call the flow ends early (e.g.
misheard answers lead to a transfer) is continued in a new call, so every line is spoken.

With ``--llm`` every conversation is also held (over WebSocket, on the same server, calls alternating)
with a *prompt* agent whose LLM is a local fake OpenAI-compatible server (``bench/_fake_llm.py``) that
answers with the demo flow's own words for the same conversation, after a fixed first-token delay of
300 ms (then its whole answer at once). Both agents then have the same sentences to say, and the server's
TTS cache is off (each would otherwise reuse the other's audio), so the pipeline's own overhead around an
LLM is measured: client latency - 300 ms, against the flow agent's latency in the same run.

On a shared machine the server runs at niceness -10 in a scheduler autogroup of nice -10 and this client
under SCHED_RR (``--server-nice 0 --no-client-rt`` to compete on equal terms); the CPU other processes
used during the run is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _calls import Call, RTCCall, WSCall
from _server import (
    BenchServer,
    Machine,
    busiest_processes,
    demo_flow_body,
    fmt_ms,
    frames_of,
    last_voiced_frame,
    machine_busy_seconds,
    percentile,
    prioritize_session,
    process_cpu_seconds,
    realtime_priority,
    run_main,
    set_niceness,
    speech_pcm,
    write_section,
)
from _webrtc import use_loopback

STAGES = ("endpointing_ms", "stt_ms", "agent_first_token_ms", "tts_first_audio_ms", "total_ms")


def _server_defaults() -> Any:
    """The server's turn-detection defaults (this checkout's ``PipelineOptions``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from callgate.pipeline.options import PipelineOptions

    return PipelineOptions()


TRANSPORTS = ("websocket", "webrtc")
LABELS = {"websocket": "WebSocket", "webrtc": "WebRTC"}
STOPPED = "end of turn decided (user-stopped-speaking)"
FINAL = "final transcript (user-transcription)"
AIORTC = "first agent audio after aiortc's receive jitter buffer"
LLM_FIRST_TOKEN_MS = 300
"""The fake LLM's time to first token (``--llm``)."""
LLM_SECTION = "Voice-to-voice latency with an LLM (prompt agent on a fake LLM)"
LLM_TARGET_MS = 50
"""Target: client latency - the LLM's first-token delay <= the flow agent's p50 + this."""
PROMPT_GREETING = "Hello, and thank you for calling Maple Street Clinic. How can I help you today?"

# Conversations the demo flow follows; every line gets a spoken answer. The first line of the first one
# has a short answer, so the smoke configuration (--quick --turns 1) stays short.
SCRIPTS: list[list[str]] = [
    [
        "Hi, I need to book an appointment please.",
        "Next Friday.",
        "Ten in the morning.",
        "Yes, that's right.",
        "Yes.",
        "When are you open on Saturday?",
        "No thank you, goodbye.",
    ],
    [
        "What are your opening hours?",
        "Yes please.",
        "I would like to book an appointment.",
        "Tomorrow.",
        "At three pm.",
        "Yes.",
        "No, that's all. Goodbye.",
    ],
    [
        "I'd like to make an appointment for Monday.",
        "At two pm, please.",
        "Yes please.",
        "Yes.",
        "What time do you close?",
        "Yes.",
        "That's all, bye.",
    ],
]


@dataclass
class Turn:
    transport: str
    key: tuple[int, int]  # (script, line): the same line over both transports
    call: int
    text: str
    speech_s: float
    client_ms: float | None = None
    server: dict[str, Any] = field(default_factory=dict)
    heard: str = ""
    note: str = ""
    client_stages: dict[str, float] = field(default_factory=dict)


async def speak_turn(call: Call, index: int, text: str, key: tuple[int, int]) -> Turn | None:
    """Speak one line and wait until the agent's answer has played out; None if the call is over."""
    pcm = speech_pcm(text)
    frames = frames_of(pcm)
    voiced = last_voiced_frame(frames)
    turn = Turn(transport=call.transport, key=key, call=index, text=text, speech_s=len(pcm) / 2 / 16000)
    spoke_at = time.monotonic()
    call.speak(frames, voiced)
    await call.wait_until(lambda: call.mark_sent_at is not None or call.ended(), timeout=30)
    end_of_speech = call.mark_sent_at
    if end_of_speech is None:
        return None  # the call ended (the agent hung up or transferred) before the line was spoken

    def answered() -> bool:
        return bool(call.audio) and call.audio[-1] >= spoke_at

    if not await call.wait_until(answered, 15):
        turn.note = "no spoken answer within 15 s"
        return turn
    first = next(t for t in call.audio if t >= spoke_at)
    if first < end_of_speech:
        turn.note = f"agent audio {1000 * (end_of_speech - first):.0f} ms before the end of speech"
    turn.client_ms = 1000 * (first - end_of_speech)
    stopped = call.find("user-stopped-speaking", spoke_at)
    final = next(((t, m) for t, m in call.messages if t >= spoke_at and m.get("type") == "user-transcription"
                  and m.get("data", {}).get("final")), None)  # fmt: skip
    if stopped is not None:
        turn.client_stages[STOPPED] = 1000 * (stopped[0] - end_of_speech)
    if final is not None:
        turn.client_stages[FINAL] = 1000 * (final[0] - end_of_speech)
        turn.heard = str(final[1]["data"].get("text", ""))
    with contextlib.suppress(TimeoutError, ConnectionError):
        _, metrics = await call.wait_for("metrics", since=first, timeout=60)
        turn.server = dict(metrics["data"].get("turn") or {})
        await call.wait_for("bot-stopped-speaking", since=first, timeout=5)
    if isinstance(call, RTCCall):
        buffered = call.aiortc_first_audio(spoke_at)
        if buffered is not None:
            turn.client_stages[AIORTC] = 1000 * (buffered - end_of_speech)
    return turn


@dataclass
class Usage:
    """What the calls of one transport cost: wall time, server and client CPU seconds, send lateness."""

    wall_s: float = 0.0
    server_s: float = 0.0
    client_s: float = 0.0
    lateness: list[float] = field(default_factory=list)

    @property
    def server_cores(self) -> float:
        return self.server_s / self.wall_s if self.wall_s else math.nan

    @property
    def client_cores(self) -> float:
        return self.client_s / self.wall_s if self.wall_s else math.nan


async def run_call(
    server: BenchServer, agent_id: str, transport: str, index: int, lines: list[str], result: Result,
    *, key: tuple[int, int],
) -> tuple[str, list[str]]:  # fmt: skip
    """One call speaking ``lines`` (``key``: the script and the position of its first line); its turns,
    call id and cost go to ``result``. Returns the call id and the lines left unspoken because the call
    ended early (e.g. the flow transferred after misheard answers)."""
    usage = result.usage
    t0, cpu0, mine0 = time.monotonic(), server.cpu_seconds(), process_cpu_seconds(os.getpid())
    info = server.web_call(agent_id, transport=transport)
    result.call_ids.append(str(info["id"]))
    call: Call = WSCall(info) if transport == "websocket" else RTCCall(info)
    label = f"{result.title} call {index}"
    try:
        await call.open()
        # The greeting plays out first (speaking over it would be a barge-in).
        await call.wait_for("bot-stopped-speaking", since=0.0, timeout=60)
        left = list(lines)
        while left:
            await asyncio.sleep(0.4)  # a natural pause before the caller answers
            if call.ended():
                break
            turn = await speak_turn(call, index, left[0], (key[0], key[1] + len(lines) - len(left)))
            if turn is None:
                break
            left.pop(0)
            result.turns.append(turn)
            srv = turn.server
            print(
                f"  {label}: {turn.text!r} -> heard {turn.heard!r}: client {fmt_ms(turn.client_ms)} ms; "
                f"server total {fmt_ms(srv.get('total_ms'))} = endpointing "
                f"{fmt_ms(srv.get('endpointing_ms'))} "
                f"+ stt {fmt_ms(srv.get('stt_ms'))} + agent {fmt_ms(srv.get('agent_first_token_ms'))} "
                f"+ tts {fmt_ms(srv.get('tts_first_audio_ms'))} {turn.note}"
            )
        if left:
            print(f"  {label}: the agent ended the call early; {len(left)} lines left for a new call")
        if not call.ended():
            call.send("disconnect-bot")
            await call.wait_until(call.ended, timeout=10)
    finally:
        await call.close()
        usage.wall_s += time.monotonic() - t0
        usage.server_s += server.cpu_seconds() - cpu0
        usage.client_s += process_cpu_seconds(os.getpid()) - mine0
        usage.lateness += call.send_lateness
    return str(info["id"]), left


# ---------------------------------------------------------------------------------------------- report


@dataclass
class Result:
    """One transport's turns, stored calls and cost."""

    transport: str
    turns: list[Turn] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    name: str = ""
    """What the report calls these calls (default: the transport's label)."""

    @property
    def title(self) -> str:
        return self.name or LABELS[self.transport]

    @property
    def answered(self) -> list[Turn]:
        return [t for t in self.turns if t.client_ms is not None]

    @property
    def client(self) -> list[float]:
        return [t.client_ms for t in self.answered if t.client_ms is not None]

    def stage(self, name: str) -> list[float]:
        return [float(t.server[name]) for t in self.answered if t.server.get(name) is not None]

    def client_stage(self, name: str) -> list[float]:
        return [t.client_stages[name] for t in self.answered if name in t.client_stages]

    @staticmethod
    def tail_of(turn: Turn) -> float | None:
        """Client latency - server ``total_ms``: Silero's hang-over plus the transport, both ways."""
        if turn.client_ms is None or turn.server.get("total_ms") is None:
            return None
        return turn.client_ms - float(turn.server["total_ms"])

    def vad_tail(self) -> list[float]:
        return [t.client_ms - float(t.server["total_ms"]) for t in self.answered
                if t.client_ms is not None and t.server.get("total_ms") is not None]  # fmt: skip


def paired(a: Result, b: Result, value: Any = lambda t: t.client_ms) -> list[tuple[float, float]]:
    """``value`` of the turns both results have for the same line of the same script."""
    mine = {t.key: value(t) for t in a.answered}
    out = []
    for t in b.answered:
        theirs, ours = value(t), mine.get(t.key)
        if theirs is not None and ours is not None:
            out.append((ours, theirs))
    return out


@dataclass
class Run:
    machine: Machine
    command: str
    wall_s: float = 0.0
    foreign_cores: float = 0.0
    foreign: list[tuple[float, str]] = field(default_factory=list)
    prioritized: bool = False
    nice: int = 0
    load_before: float = 0.0
    load_after: float = 0.0


def _cells(values: list[float]) -> str:
    if not values:
        return "- | - | -"
    return f"{fmt_ms(percentile(values, 50))} | {fmt_ms(percentile(values, 95))} | {fmt_ms(max(values))}"


def table(results: list[Result]) -> list[str]:
    head = "| measure (ms) | " + " | ".join(f"{r.title} p50 | p95 | max" for r in results)
    rows = [head + " |", "| --- |" + " --- | --- | --- |" * len(results)]

    def row(name: str, get: Any) -> None:
        rows.append(f"| {name} | " + " | ".join(_cells(get(r)) for r in results) + " |")

    row("**voice-to-voice, at the client**", lambda r: r.client)
    for name in (STOPPED, FINAL):
        row(f"client: end of speech -> {name}", lambda r, n=name: r.client_stage(n))
    for s in STAGES:
        row(f"server: `{s}`", lambda r, s=s: r.stage(s))
    row("client latency - server `total_ms` (Silero hang-over + transport)", Result.vad_tail)
    if any(r.transport == "webrtc" for r in results):
        row(f"client: end of speech -> {AIORTC}", lambda r: r.client_stage(AIORTC))
    return rows


def head(results: list[Result], run: Run, about: str) -> list[str]:
    """A section's first lines: the machine, the command, then how many turns each kind of call had,
    the wall time and ``about`` (what was measured, how) in one paragraph."""
    counts = "; ".join(
        f"{r.title}: {len(r.answered)} answered turns of {len(r.turns)} spoken in "
        f"{len({t.call for t in r.turns})} calls"
        for r in results
    )
    paragraph = f"{counts} ({run.wall_s:.0f} s wall time). {about}"
    return [f"Measured {run.machine.line()}.", "", "```", run.command, "```", "", paragraph]


def report(results: list[Result], run: Run) -> str:
    by = {r.transport: r for r in results}
    lines = [
        *head(
            results,
            run,
            "The demo clinic flow with the server's default engines (Silero "
            "VAD, faster-whisper tiny.en int8, piper joe-medium). One `callgate serve` subprocess per "
            "transport, both up for the whole run, so that each one's state (warm models, the TTS cache of "
            "sentences already said) follows the same history; the same conversations over each transport, "
            "calls alternating between them (who goes first alternates too). The client streams a "
            "microphone in real time (20 ms frames, a -60 dBFS noise floor between utterances), speaks "
            "piper-synthesised lines the flow answers (opening hours, a booking with day, time and "
            "confirmation, goodbye) and waits for each answer to play out. **Latency = arrival of the first "
            "audible (> -60 dBFS) agent audio frame - the moment the client handed over the last voiced "
            "(> -40 dBFS) frame of the utterance.** WebSocket: RTVI JSON + PCM16 16 kHz binary frames over "
            "TCP. WebRTC: an aiortc peer (SDP offer to `webrtc_offer_url`, RTVI on the `rtvi` data channel), "
            "Opus 48 kHz both ways over SRTP/UDP; its figure also includes Opus encoding (client) and "
            "decoding (server) of the caller's audio, the server's inbound reorder buffer (no delay for "
            "packets in order), Opus encoding of the agent's audio and the server's outbound track (no "
            "prebuffer: each frame in the first 20 ms slot after it arrives). Agent audio is taken at RTP "
            "arrival and decoded there: no client playout buffer is included (for either transport); the "
            "last row shows what aiortc's own receive jitter buffer adds. Server stages are the server's "
            "own per-turn figures (RTVI `metrics`); `total_ms` starts at the last frame Silero still called "
            "speech.",
        ),
        "",
        *table(results),
        "",
    ]
    for r in results:
        p50, p95 = percentile(r.client, 50), percentile(r.client, 95)
        stored_p50 = [c["latency"]["p50_ms"] for c in r.stored
                      if (c.get("latency") or {}).get("p50_ms") is not None]  # fmt: skip
        stored_turns = sum(int((c.get("latency") or {}).get("turns") or 0) for c in r.stored)
        lines.append(
            f"{LABELS[r.transport]}: targets p50 <= 500 ms **{'met' if p50 <= 500 else 'not met'}** "
            f"({fmt_ms(p50)} ms), p95 <= 800 ms **{'met' if p95 <= 800 else 'not met'}** "
            f"({fmt_ms(p95)} ms); `GET /v1/calls/{{id}}` stored {stored_turns} agent turns with their "
            f"latency (per-call p50 of `total_ms`: {', '.join(fmt_ms(v) for v in stored_p50)} ms)."
        )
    ws, rtc = by.get("websocket"), by.get("webrtc")
    if ws is not None and rtc is not None and ws.client and rtc.client:
        w50, r50 = percentile(ws.client, 50), percentile(rtc.client, 50)
        w95, r95 = percentile(ws.client, 95), percentile(rtc.client, 95)
        wt, rt = percentile(ws.vad_tail(), 50), percentile(rtc.vad_tail(), 50)
        wtot, rtot = percentile(ws.stage("total_ms"), 50), percentile(rtc.stage("total_ms"), 50)
        pairs = paired(ws, rtc)
        diff = percentile([r - w for w, r in pairs], 50)
        tails = paired(ws, rtc, Result.tail_of)
        tail_diff = percentile([r - w for w, r in tails], 50)
        lines += [
            "",
            f"**WebRTC vs WebSocket in this run: p50 {fmt_ms(r50)} vs {fmt_ms(w50)} ms (x{r50 / w50:.2f}), "
            f"p95 {fmt_ms(r95)} vs {fmt_ms(w95)} ms (x{r95 / w95:.2f}); line by line, WebRTC took "
            f"{diff:+.0f} ms (median of {len(pairs)} paired turns).** Turns fall in two groups, those that "
            "end early (an expected answer or a finished sentence) and those that wait for the full "
            "end-of-turn silence and then "
            "for Whisper, so the p50s also depend on how many turns of each group a transport got; the "
            "paired difference does not. The transport's own share is the part outside the server's "
            f"pipeline (client latency - `total_ms`: Silero's hang-over plus both directions of "
            f"transport): {fmt_ms(rt)} ms over WebRTC against {fmt_ms(wt)} ms over WebSocket "
            f"({tail_diff:+.0f} ms paired); the server's own `total_ms` p50 is {fmt_ms(rtot)} vs "
            f"{fmt_ms(wtot)} ms.",
        ]
    base = ws or rtc
    if base is not None and base.client:

        def p(stage: str, q: float) -> str:
            return fmt_ms(percentile(base.stage(stage), q))

        ep, tail = percentile(base.stage("endpointing_ms"), 50), percentile(base.vad_tail(), 50)
        defaults = _server_defaults()
        lines += [
            "",
            f"What dominates ({LABELS[base.transport]}): deciding that the caller is done. Endpointing p50 "
            f"{fmt_ms(ep)} ms, p95 {p('endpointing_ms', 95)} ms (server defaults: the words of a pause are "
            f"transcribed at `transcribe_pause_ms` = {defaults.transcribe_pause_ms} ms while Whisper has "
            f"nothing waiting, and the turn ends after `early_end_silence_ms` = "
            f"{defaults.early_end_silence_ms} ms of silence if they are what the flow's step expects, "
            f"after `finished_sentence_silence_ms` = {defaults.finished_sentence_silence_ms} ms if they "
            f"are a finished sentence, else after `end_of_turn_silence_ms` = "
            f"{defaults.end_of_turn_silence_ms} ms; an agent's `turn_detection` changes them), plus "
            "Silero's hang-over after the acoustic end and the "
            f"transport ({fmt_ms(tail)} ms): about {fmt_ms(ep + tail)} ms at the p50. Whisper: p50 "
            f"{p('stt_ms', 50)} ms, p95 {p('stt_ms', 95)} ms (it transcribes during the early-end "
            "silence, so it costs nothing after the turns that end early and its full time after the "
            f"others). piper's first sentence: p50 {p('tts_first_audio_ms', 50)} ms, p95 "
            f"{p('tts_first_audio_ms', 95)} ms (sentences said before come from the TTS cache). The flow: "
            f"{p('agent_first_token_ms', 50)} ms.",
        ]
    lines += ["", load_line(results, run)]
    notes = [t for r in results for t in r.turns if t.note]
    if notes:
        lines += [
            "",
            "Anomalies: "
            + "; ".join(f"{t.transport} call {t.call} {t.text!r}: {t.note}" for t in notes)
            + ".",
        ]
    return "\n".join(lines)


@contextlib.contextmanager
def fake_llm() -> Any:
    """``bench/_fake_llm.py`` in its own process; yields its base URL."""
    script = Path(__file__).resolve().parent / "_fake_llm.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--first-token-ms", str(LLM_FIRST_TOKEN_MS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("URL "):
            raise RuntimeError(f"the fake LLM did not start: {line!r}")
        yield line.split(" ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_line(results: list[Result], run: Run) -> str:
    load = "; ".join(
        f"{r.title} calls: server {r.usage.server_cores:.2f} cores, this client "
        f"{r.usage.client_cores:.2f} cores (send lateness p99 "
        f"{fmt_ms(1000 * percentile(r.usage.lateness, 99))} ms)"
        for r in results
    )
    return (
        (
            f"The server ran at niceness {run.nice} in a scheduler autogroup of nice {run.nice}, so other "
            "processes on this shared machine got only what it left. "
            if run.prioritized
            else ""
        )
        + f"Load during the run: {load}; other processes on the machine {run.foreign_cores:.2f} cores"
        + (f" ({'; '.join(f'{c:.2f} cores: {cmd}' for c, cmd in run.foreign)})" if run.foreign else "")
        + f"; the 1-minute load average was {run.load_before:.2f} before the run and "
        f"{run.load_after:.2f} after it."
    )


def overhead(result: Result) -> list[float]:
    """Client latency - the fake LLM's first-token delay: the pipeline's own share around the LLM."""
    return [v - LLM_FIRST_TOKEN_MS for v in result.client]


def report_llm(flow: Result, prompt: Result, run: Run, *, env_cache: str) -> str:
    """The ``--llm`` section: the prompt agent on the fake LLM against the flow agent, same run."""
    lines = [
        *head(
            [flow, prompt],
            run,
            "The same conversations as the section above, over WebSocket, "
            "to one `callgate serve` subprocess (default engines: Silero VAD, faster-whisper tiny.en int8, "
            "piper joe-medium), calls alternating between the demo clinic **flow** and a **prompt** agent "
            "whose LLM (`engine: openai`) is a local fake OpenAI-compatible server "
            "(`bench/_fake_llm.py`, its own process): it answers with **the demo flow's own words for the "
            "same conversation**, streamed "
            f"after a fixed **{LLM_FIRST_TOKEN_MS} ms** first-token delay, then all at once. Both agents "
            "have the same sentences to say, and the server's TTS cache is off "
            f"(`CALLGATE_TTS_CACHE_MB={env_cache}`) so that neither reuses the other's audio. So the prompt "
            f"agent's latency is the flow's plus {LLM_FIRST_TOKEN_MS} ms plus whatever the pipeline adds "
            "around an LLM (the request, SSE parsing, the chat history, the sentence splitter) and minus "
            "what a flow gains from knowing what answer it waits for (its early end of turn). Latency as "
            "above (first audible agent audio - last voiced frame handed over).",
        ),
        "",
        *table([flow, prompt]),
        f"| prompt agent: client latency - {LLM_FIRST_TOKEN_MS} ms | - | - | - "
        f"| {_cells(overhead(prompt))} |",
        "",
    ]
    f50, o50 = percentile(flow.client, 50), percentile(overhead(prompt), 50)
    met = o50 <= f50 + LLM_TARGET_MS
    pairs = paired(flow, prompt)
    diff = percentile([p - f for f, p in pairs], 50) if pairs else math.nan
    first = percentile(prompt.stage("agent_first_token_ms"), 50)
    by_stage = []
    for stage, label in (("endpointing_ms", "endpointing"), ("stt_ms", "STT"),
                         ("agent_first_token_ms", "agent"), ("tts_first_audio_ms", "TTS")):  # fmt: skip
        diffs = [p - f for f, p in paired(flow, prompt, lambda t, s=stage: t.server.get(s))]
        if diffs:
            by_stage.append(f"{label} {percentile(diffs, 50):+.0f} ms")
    tails = [p - f for f, p in paired(flow, prompt, Result.tail_of)]
    if tails:
        by_stage.append(f"Silero hang-over and transport {percentile(tails, 50):+.0f} ms")
    lines += [
        f"**Target: prompt agent's client latency - {LLM_FIRST_TOKEN_MS} ms <= the flow agent's p50 + "
        f"{LLM_TARGET_MS} ms: {'met' if met else 'not met'}** (p50 {fmt_ms(o50)} ms against "
        f"{fmt_ms(f50)} + {LLM_TARGET_MS} ms). Line by line the prompt agent took {diff:+.0f} ms against "
        f"the flow (median of {len(pairs)} paired turns; {LLM_FIRST_TOKEN_MS} ms of it is the fake LLM's "
        f"delay); stage by stage, the paired medians (prompt - flow): {', '.join(by_stage)}. The "
        f"server's `agent_first_token_ms` for the prompt agent: p50 {fmt_ms(first)} ms, i.e. "
        f"{first - LLM_FIRST_TOKEN_MS:+.0f} ms around the {LLM_FIRST_TOKEN_MS} ms the LLM waited (the "
        "HTTP request, the first SSE event, the OpenAI client; it counts from the final transcript, and "
        "with preemptive generation, on by default, the request left at the pause, before the turn "
        "ended: a turn that silence ended gets its first token well under 300 ms after it); the flow "
        "answers in "
        f"{fmt_ms(percentile(flow.stage('agent_first_token_ms'), 50))} ms. The other stages are the "
        "same code doing the same work for both agents, but for endpointing: piper's first audio p50 "
        f"{fmt_ms(percentile(flow.stage('tts_first_audio_ms'), 50))} ms for the flow, "
        f"{fmt_ms(percentile(prompt.stage('tts_first_audio_ms'), 50))} ms for the prompt agent (the same "
        "sentences); endpointing p50 "
        f"{fmt_ms(percentile(flow.stage('endpointing_ms'), 50))} vs "
        f"{fmt_ms(percentile(prompt.stage('endpointing_ms'), 50))} ms: a flow's turn may end at "
        "`early_end_silence_ms` when the words answer what its step waits for, a prompt agent's only on "
        "a finished sentence, at `finished_sentence_silence_ms`.",
        "",
        load_line([flow, prompt], run),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    machine = Machine()
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    if args.llm and "websocket" not in transports:
        print("--llm runs its prompt agent over WebSocket: use --transport websocket or both")
        return 2
    scripts = [SCRIPTS[i % len(SCRIPTS)][: args.turns] for i in range(args.calls)]
    print("synthesising caller speech (cached after the first run)...")
    for lines in scripts:
        for text in lines:
            speech_pcm(text)
    if "webrtc" in transports:
        use_loopback()
    results = {t: Result(t) for t in transports}
    prompt = Result("websocket", name="prompt agent (fake LLM)")
    if args.llm:
        results["websocket"].name = "flow agent"
    run = Run(machine=machine, command=command_line(args), load_before=os.getloadavg()[0])
    env = dict(item.split("=", 1) for item in args.server_env)
    if args.llm:  # both agents say the same sentences: neither may reuse the other's synthesis
        env.setdefault("CALLGATE_TTS_CACHE_MB", "0")
    run.prioritized = args.server_nice < 0 and prioritize_session(args.server_nice)
    run.nice = args.server_nice
    if args.client_nice:
        set_niceness(args.client_nice)
    if args.client_rt:
        realtime_priority()
    with contextlib.ExitStack() as stack:
        llm_url = stack.enter_context(fake_llm()) if args.llm else ""
        # One server per transport, started together and both up for the whole run: each one's state
        # (warm models, the TTS cache of sentences already said) follows the same conversations.
        with concurrent.futures.ThreadPoolExecutor() as pool:
            futures = {t: pool.submit(BenchServer(env=env, nice=args.server_nice).__enter__)
                       for t in transports}  # fmt: skip
        for future in futures.values():
            if future.exception() is None:
                stack.push(future.result())  # stopped on the way out; a failed start stopped itself
        servers = {t: f.result() for t, f in futures.items()}
        agents = {}
        turn_detection = {"turn_detection": json.loads(args.turn_detection)} if args.turn_detection else {}
        for transport, server in servers.items():
            print(f"{LABELS[transport]}: server pid {server.pid} on {server.url}")
            agents[transport] = server.create_agent(
                {"name": "clinic-bench", "flow": demo_flow_body(), "silence_timeout_s": 120,
                 "max_duration_s": 600, **turn_detection}
            )  # fmt: skip
        prompt_agent = ""
        if args.llm:
            prompt_agent = servers["websocket"].create_agent(
                {"name": "llm-bench", "prompt": "You are the receptionist of a clinic. Answer briefly.",
                 "initial_message": PROMPT_GREETING, "silence_timeout_s": 120, "max_duration_s": 600,
                 "llm": {"engine": "openai", "base_url": llm_url, "model": "bench-llm"}, **turn_detection}
            )  # fmt: skip
        pids = {os.getpid(), *(p for server in servers.values() for p in server.pids())}
        started = time.monotonic()
        ours0, busy0 = sum(process_cpu_seconds(p) for p in pids), machine_busy_seconds()
        index = 0
        for n, script in enumerate(scripts):
            for transport in transports if n % 2 == 0 else transports[::-1]:  # who goes first alternates
                result = results[transport]
                lines = script
                for _attempt in range(2):  # lines left by a call that ended early go to one more call
                    call_id, lines = await run_call(
                        servers[transport], agents[transport], transport, index, lines, result,
                        key=(n, len(script) - len(lines)),
                    )  # fmt: skip
                    index += 1
                    if not lines:
                        break
                if args.llm and transport == "websocket":  # the same lines to the prompt agent
                    await run_call(servers["websocket"], prompt_agent, "websocket", index, script, prompt,
                                   key=(n, 0))  # fmt: skip
                    index += 1
        run.wall_s = time.monotonic() - started
        ours = (sum(process_cpu_seconds(p) for p in pids) - ours0) / run.wall_s
        run.foreign_cores = max(0.0, (machine_busy_seconds() - busy0) / run.wall_s - ours)
        if run.foreign_cores > 0.15:
            run.foreign = busiest_processes(pids)
        run.load_after = os.getloadavg()[0]
        await asyncio.sleep(1.0)  # turn records are written asynchronously
        for transport, result in [*results.items(), *([("websocket", prompt)] if args.llm else [])]:
            for call_id in result.call_ids:
                with contextlib.suppress(Exception):
                    result.stored.append(servers[transport].get_call(call_id))
    text = report(list(results.values()), run)
    print()
    print(text)
    print()
    llm_text = (
        report_llm(results["websocket"], prompt, run, env_cache=env.get("CALLGATE_TTS_CACHE_MB", "64"))
        if args.llm and prompt.client
        else ""
    )
    if llm_text:
        print(llm_text)
        print()
    for r in results.values():
        print(
            f"RESULT latency transport={r.transport} answered={len(r.answered)} spoken={len(r.turns)} "
            f"p50_ms={percentile(r.client, 50):.0f} p95_ms={percentile(r.client, 95):.0f}"
        )
    if args.llm:
        p50 = percentile(prompt.client, 50) if prompt.client else math.nan
        o50 = percentile(overhead(prompt), 50) if prompt.client else math.nan
        print(
            f"RESULT latency transport=prompt answered={len(prompt.answered)} spoken={len(prompt.turns)} "
            f"p50_ms={p50:.0f} overhead_p50_ms={o50:.0f}"
        )
    if args.write and not args.quick and args.turns >= 7 and not args.turn_detection:
        short = [r for r in results.values() if len(r.answered) < 20]
        if len(transports) < len(TRANSPORTS):
            print("\none transport only: BENCHMARKS.md not updated (its section compares both)")
        elif short:
            print(f"\nonly {len(short[0].answered)} answered {short[0].transport} turns (< 20): not written")
        else:
            write_section("Voice-to-voice latency", text)
            print("\nBENCHMARKS.md: section 'Voice-to-voice latency' updated")
    if args.write and not args.quick and args.turns >= 7 and llm_text and not args.turn_detection:
        if len(prompt.answered) < 20:
            print(
                f"\nonly {len(prompt.answered)} answered prompt-agent turns (< 20): LLM section not written"
            )
        else:
            write_section(LLM_SECTION, llm_text)
            print(f"\nBENCHMARKS.md: section '{LLM_SECTION}' updated")
    everyone = [*results.values(), *([prompt] if args.llm else [])]
    return 0 if all(r.answered for r in everyone) else 1


def command_line(args: argparse.Namespace) -> str:
    command = "python bench/latency.py" + (" --quick" if args.quick else "")
    if args.transport != "both":
        command += f" --transport {args.transport}"
    if args.calls != 3 and not args.quick:
        command += f" --calls {args.calls}"
    if args.turns < 7:
        command += f" --turns {args.turns}"
    if args.llm:
        command += " --llm"
    if args.turn_detection:
        command += f" --turn-detection '{args.turn_detection}'"
    if args.server_nice == 0 and not args.client_rt:
        command += " --server-nice 0 --no-client-rt" + (
            f" --client-nice {args.client_nice}" if args.client_nice != -15 else ""
        )
    return command


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--transport", choices=["websocket", "webrtc", "both"], default="both",
        help="transport(s) of the calls (default both, calls alternating; BENCHMARKS.md needs both)",
    )  # fmt: skip
    parser.add_argument(
        "--calls", type=int, default=3, help="calls per transport, 7 turns each (default 3 = 21 turns)"
    )
    parser.add_argument(
        "--turns", type=int, default=7, help="lines spoken per call (default 7, all; fewer: not written)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 call per transport; BENCHMARKS.md is not written"
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for the server process (repeatable), e.g. CALLGATE_LOG_LEVEL=WARNING",
    )  # fmt: skip
    parser.add_argument(
        "--server-nice", type=int, default=-10,
        help="niceness of the server (default -10, so other processes on a shared machine get only what it "
        "leaves; 0 to compete with them on equal terms)",
    )  # fmt: skip
    parser.add_argument(
        "--no-client-rt", dest="client_rt", action="store_false",
        help="do not run this client under SCHED_RR (by default it does, so it keeps real time)",
    )  # fmt: skip
    parser.add_argument("--client-nice", type=int, default=-15, help="niceness of this client process")
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--turn-detection", default="", metavar="JSON",
        help="the agents' turn_detection (a JSON object, e.g. '{\"transcribe_pause_ms\": 150}'); default: "
        "the server's defaults (BENCHMARKS.md is not written: its figures are the defaults')",
    )  # fmt: skip
    parser.add_argument(
        "--llm", action="store_true",
        help=f"also hold every conversation with a prompt agent on a local fake LLM ({LLM_FIRST_TOKEN_MS} ms "
        "to first token), over WebSocket on the same server, and compare it with the flow agent",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.calls = 1
    args.turns = max(1, min(args.turns, 7))
    run_main(lambda: main_async(args))


if __name__ == "__main__":
    main()
