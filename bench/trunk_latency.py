"""Voice-to-voice latency and WER of phone calls over the SIP trunk (8 kHz G.711), beside the WebSocket
figure from the same run.

    python bench/trunk_latency.py                 # 3 conversations x 7 lines, each over both (~8 min)
    python bench/trunk_latency.py --quick         # 1 conversation per transport; nothing written
    python bench/trunk_latency.py --quick --turns 1   # the CI smoke configuration (~40 s)

What it does: starts ``callgate serve`` in a subprocess with the SIP trunk on (``CALLGATE_SIP_LISTEN`` on
loopback), creates the demo clinic flow agent, a ``sip`` carrier whose inbound network is loopback and a
number on it answered by the agent. It then holds the same conversations as ``bench/latency.py`` (the
same piper lines, the same microphone: 20 ms frames in real time, a -60 dBFS room between utterances),
alternating between a WebSocket web call (``bench/latency.py``'s client, PCM16 16 kHz) and a phone call
(one server per transport, both up for the whole run, so that their TTS caches follow the same history):
``bench/_rtp.py`` dials the number over UDP (INVITE, 200, ACK) and speaks plain RTP, PCMU at 8 kHz in
20 ms packets, the speech resampled to 8 kHz (soxr HQ, per utterance, so no filter delay is timed) and
μ-law encoded, as a carrier's leg delivers a caller.

Latency of a turn = arrival of the first audible (> -60 dBFS) agent audio packet - the moment the client
handed over the packet holding the last voiced (> -40 dBFS) 20 ms frame of the utterance; over the trunk
the agent's audio is μ-law decoded at RTP arrival (no playout buffer, as for WebSocket). A phone has no
RTVI messages, so the client waits for the agent to be quiet for 1 s before it speaks again, and the
server's per-stage figures of both transports come from the stored turns (``GET /v1/calls/{id}``).

WER: the caller turns the server stored (embedded faster-whisper, tiny.en) against the lines spoken,
per transport, after lowercasing and dropping punctuation: 8 kHz G.711 round-tripped speech (the trunk)
against the same speech at 16 kHz (WebSocket).

No priority changes: the server and this client compete with whatever else runs on the machine, whose
CPU use during the run is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rtp import SipCall, route_number, sip_call_id
from _server import (
    BenchServer,
    Machine,
    busiest_processes,
    demo_flow_body,
    fmt_ms,
    frames_of,
    free_port,
    last_voiced_frame,
    machine_busy_seconds,
    percentile,
    process_cpu_seconds,
    speech_pcm,
    write_section,
)
from latency import SCRIPTS, Result, Turn, _server_defaults, run_call

NUMBER = "+15550100200"
SECTION = "Voice-to-voice latency over a SIP trunk (telephone band)"
STAGES = ("endpointing_ms", "stt_ms", "agent_first_token_ms", "tts_first_audio_ms", "total_ms")
LABELS = {"websocket": "WebSocket", "sip_trunk": "SIP trunk (G.711 8 kHz)"}


_NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


def words(text: str) -> list[str]:
    """Lowercase words without punctuation; Whisper's digits up to 20 as the words the script says
    ("10" -> "ten"), so that number formatting is not counted as an error."""
    out = re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
    return [_NUMBERS[int(w)] if w.isdigit() and int(w) <= 20 else w for w in out]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


@dataclass
class Wer:
    errors: int = 0
    words: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def add(self, spoken: str, heard: str) -> None:
        ref = words(spoken)
        self.errors += edit_distance(ref, words(heard))
        self.words += len(ref)
        self.pairs.append((spoken, heard))

    @property
    def rate(self) -> float:
        return self.errors / self.words if self.words else float("nan")


async def run_sip_call(
    server: BenchServer, sip: tuple[str, int], index: int, lines: list[str], result: Result,
    *, key: tuple[int, int], known: set[str],
) -> tuple[str, list[str]]:  # fmt: skip
    """One phone call speaking ``lines``; like :func:`latency.run_call` for the SIP trunk."""
    usage = result.usage
    t0, cpu0, mine0 = time.monotonic(), server.cpu_seconds(), process_cpu_seconds(os.getpid())
    call = SipCall(sip, NUMBER)
    label = f"{LABELS['sip_trunk']} call {index}"
    left = list(lines)
    call_id = ""
    try:
        await call.open()
        call_id = await sip_call_id(server, known)
        result.call_ids.append(call_id)
        await call.wait_until(lambda: bool(call.audio), 60)
        await call.wait_quiet(0.0, silence_s=1.0)  # the greeting has played out
        while left:
            await asyncio.sleep(0.4)
            if call.ended():
                break
            text = left[0]
            pcm = speech_pcm(text)
            frames = frames_of(pcm)
            turn = Turn(
                transport="sip_trunk", key=(key[0], key[1] + len(lines) - len(left)), call=index,
                text=text, speech_s=len(pcm) / 2 / 16000,
            )  # fmt: skip
            spoke_at = time.monotonic()
            call.speak(frames, last_voiced_frame(frames))
            await call.wait_until(lambda: call.mark_sent_at is not None or call.ended(), timeout=30)
            end_of_speech = call.mark_sent_at
            if end_of_speech is None:
                break
            left.pop(0)
            result.turns.append(turn)

            def answered(since: float = spoke_at) -> bool:
                return bool(call.audio) and call.audio[-1] >= since

            if not await call.wait_until(answered, 15):
                turn.note = "no spoken answer within 15 s"
                continue
            first = next(t for t in call.audio if t >= spoke_at)
            if first < end_of_speech:
                turn.note = f"agent audio {1000 * (end_of_speech - first):.0f} ms before the end of speech"
            turn.client_ms = 1000 * (first - end_of_speech)
            print(f"  {label}: {text!r}: client {fmt_ms(turn.client_ms)} ms {turn.note}")
            await call.wait_quiet(first, silence_s=1.0)
        if left:
            print(f"  {label}: the agent ended the call early; {len(left)} lines left for a new call")
    finally:
        await call.close()
        usage.wall_s += time.monotonic() - t0
        usage.server_s += server.cpu_seconds() - cpu0
        usage.client_s += process_cpu_seconds(os.getpid()) - mine0
        usage.lateness += call.send_lateness
    return call_id, left


def stored_turns(result: Result) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The stored agent turns with latency, and the stored caller turns, of a transport's calls."""
    agent, user = [], []
    for call in result.stored:
        for turn in call.get("transcript") or []:
            if turn["role"] == "agent" and turn.get("total_ms") is not None:
                agent.append(turn)
            elif turn["role"] == "user":
                user.append(turn)
    return agent, user


def wer_of(result: Result, scripts: list[list[str]]) -> Wer:
    """Caller turns as stored against the lines spoken, call by call (turns in order)."""
    wer = Wer()
    spoken_by_call: dict[int, list[str]] = {}
    for turn in result.turns:
        spoken_by_call.setdefault(turn.call, []).append(turn.text)
    calls = sorted(spoken_by_call)
    for index, stored in zip(calls, result.stored, strict=False):
        heard = [t["text"] for t in stored.get("transcript") or [] if t["role"] == "user"]
        spoken = spoken_by_call[index]
        wer.add(" ".join(spoken), " ".join(heard))
    return wer


def report(results: dict[str, Result], wers: dict[str, Wer], machine: Machine, command: str,
           wall_s: float, foreign: float, busiest: list[tuple[float, str]], load1: float) -> str:  # fmt: skip
    ws, sip = results["websocket"], results["sip_trunk"]
    counts = "; ".join(
        f"{LABELS[t]}: {len(r.answered)} answered turns of {len(r.turns)} spoken in "
        f"{len({x.call for x in r.turns})} calls"
        for t, r in results.items()
    )
    lines = [
        f"Measured {machine.line()}.",
        "",
        "```",
        command,
        "```",
        "",
        counts
        + f" ({wall_s:.0f} s wall time). One `callgate serve` subprocess per transport (the phone calls' "
        "with the SIP trunk on loopback), both up for the whole run so that each one's state (warm "
        "models, the TTS cache of sentences already said) follows the same history; the demo clinic "
        "flow with the default engines (Silero VAD, faster-whisper tiny.en int8, piper joe-medium); the "
        "same conversations as `bench/latency.py`, calls alternating between a WebSocket web call "
        "(PCM16 16 kHz) and a phone call over the trunk (`bench/_rtp.py`: a SIP UAC over UDP, plain RTP, "
        "PCMU 8 kHz, 20 ms packets; the caller's speech resampled to 8 kHz and μ-law encoded). "
        "**Latency = arrival of the first audible (> -60 dBFS) agent audio - the moment the client "
        "handed over the last voiced (> -40 dBFS) 20 ms frame of the utterance**, agent audio taken at "
        "arrival (no playout buffer). Server stages are the stored per-turn figures "
        "(`GET /v1/calls/{id}`). No priority changes.",
        "",
        "| measure | " + " | ".join(f"{LABELS[t]} p50 | p95 | max" for t in results) + " |",
        "| --- |" + " --- | --- | --- |" * len(results),
    ]

    def cells(values: list[float]) -> str:
        if not values:
            return "- | - | -"
        return f"{fmt_ms(percentile(values, 50))} | {fmt_ms(percentile(values, 95))} | {fmt_ms(max(values))}"

    lines.append("| **voice-to-voice, at the client (ms)** | "
                 + " | ".join(cells(r.client) for r in results.values()) + " |")  # fmt: skip
    for stage in STAGES:
        per = [[float(t[stage]) for t in stored_turns(r)[0] if t.get(stage) is not None]
               for r in results.values()]  # fmt: skip
        lines.append(f"| server: `{stage}` (stored turns) | " + " | ".join(cells(v) for v in per) + " |")
    wer_cells = " | ".join(
        f"{100 * wers[t].rate:.1f}% ({wers[t].errors} errors / {wers[t].words} words) | | " for t in results
    )
    lines.append(f"| **WER of the caller's turns** | {wer_cells} |")
    lines.append("")
    w50, s50 = percentile(ws.client, 50), percentile(sip.client, 50)
    s95 = percentile(sip.client, 95)
    diff = s50 - w50
    pairs = {t.key: t.client_ms for t in ws.answered}
    paired = [t.client_ms - pairs[t.key] for t in sip.answered if t.key in pairs and t.client_ms is not None
              and pairs[t.key] is not None]  # fmt: skip
    paired_diff = percentile(paired, 50) if paired else float("nan")
    met = s50 <= 540 and diff <= 40
    lines.append(
        f"Target (the web target p50 <= 500 ms, plus at most 40 ms for the telephone band): **"
        f"{'met' if met else 'not met'}**: SIP trunk p50 {fmt_ms(s50)} ms (p95 {fmt_ms(s95)} ms) against "
        f"WebSocket p50 {fmt_ms(w50)} ms in the same run ({diff:+.0f} ms; line by line the trunk took "
        f"{paired_diff:+.0f} ms, median of {len(paired)} paired turns). The web target itself (p50 <= "
        f"500 ms) was **{'met' if w50 <= 500 else 'not met'}** by the WebSocket calls of this run."
    )
    sip_agent = stored_turns(sip)[0]
    ep = percentile(
        [float(t["endpointing_ms"]) for t in sip_agent if t.get("endpointing_ms") is not None], 50
    )
    stts = [float(t["stt_ms"]) for t in sip_agent if t.get("stt_ms") is not None]
    waited = [v for v in stts if v > 0]
    d = _server_defaults()
    lines += [
        "",
        f"What dominates over the trunk, as over WebSocket: deciding that the caller is done (endpointing "
        f"p50 {fmt_ms(ep)} ms: words the flow's step expects end the turn after "
        f"{d.early_end_silence_ms} ms of silence, another finished sentence after "
        f"{d.finished_sentence_silence_ms} ms, anything else after {d.end_of_turn_silence_ms} ms), then "
        "piper's first sentence when it is not in the TTS cache. Whisper costs time "
        f"only after the turns that wait for the full silence ({len(waited)} of {len(stts)} over the trunk, "
        f"{fmt_ms(percentile(waited, 50))} ms at their p50); elsewhere it ran during the silence. The "
        "trunk's own share is the RTP path: the jitter buffer and 8 -> 16 kHz upsampling on the way in, "
        "20 ms packetisation and the paced RTP sender on the way out. WER (digits written as the script's "
        f"words): {100 * wers['sip_trunk'].rate:.1f}% on 8 kHz G.711 against "
        f"{100 * wers['websocket'].rate:.1f}% at 16 kHz, the same lines and the same Whisper model "
        "(tiny.en).",
    ]
    load = "; ".join(
        f"{LABELS[t]} calls: server {r.usage.server_cores:.2f} cores, this client {r.usage.client_cores:.2f} "
        f"cores" for t, r in results.items()
    )  # fmt: skip
    lines += [
        "",
        f"Load during the run: {load}; other processes on the machine {foreign:.2f} cores"
        + (f" ({'; '.join(f'{c:.2f} cores: {cmd}' for c, cmd in busiest)})" if busiest else "")
        + f"; the 1-minute load average was {load1:.2f} when the run started"
        + (" (**taken under load**: the machine is shared)" if load1 >= 0.5 else "")
        + ".",
    ]
    misheard = [(s, h) for s, h in wers["sip_trunk"].pairs if words(s) != words(h)]
    if misheard:
        lines += ["", "What Whisper heard over the trunk where it differs from what was said: "
                  + "; ".join(f"{s!r} -> {h!r}" for s, h in misheard[:6]) + "."]  # fmt: skip
    notes = [t for r in results.values() for t in r.turns if t.note]
    if notes:
        lines += ["", "Anomalies: " + "; ".join(f"{LABELS[t.transport]} call {t.call} {t.text!r}: {t.note}"
                                                for t in notes) + "."]  # fmt: skip
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    machine = Machine()
    load1 = os.getloadavg()[0]
    scripts = [SCRIPTS[i % len(SCRIPTS)][: args.turns] for i in range(args.calls)]
    print("synthesising caller speech (cached after the first run)...")
    for lines in scripts:
        for text in lines:
            speech_pcm(text)
    sip_port = free_port()
    extra = dict(item.split("=", 1) for item in args.server_env)
    envs = {
        "websocket": extra,
        "sip_trunk": {"CALLGATE_SIP_LISTEN": f"127.0.0.1:{sip_port}", "CALLGATE_RTP_PORTS": "42000-43999",
                      **extra},
    }  # fmt: skip
    results = {"websocket": Result("websocket"), "sip_trunk": Result("sip_trunk")}
    known: set[str] = set()
    with contextlib.ExitStack() as stack:
        # One server per transport, both up for the whole run: each one's state (warm models, the TTS
        # cache of sentences already said) follows the same conversations, as in bench/latency.py.
        with concurrent.futures.ThreadPoolExecutor() as pool:
            futures = {t: pool.submit(BenchServer(env=env).__enter__) for t, env in envs.items()}
        for future in futures.values():
            if future.exception() is None:
                stack.push(future.result())
        servers = {t: f.result() for t, f in futures.items()}
        agents = {}
        for transport, server in servers.items():
            print(f"{LABELS[transport]}: server pid {server.pid} on {server.url}")
            agents[transport] = server.create_agent(
                {"name": "clinic-bench", "flow": demo_flow_body(), "silence_timeout_s": 120,
                 "max_duration_s": 600}
            )  # fmt: skip
        trunk = servers["sip_trunk"]
        route_number(trunk, NUMBER, agents["sip_trunk"])
        pids = {os.getpid(), *(p for server in servers.values() for p in server.pids())}
        started = time.monotonic()
        ours0, busy0 = sum(process_cpu_seconds(p) for p in pids), machine_busy_seconds()
        index = 0
        for n, script in enumerate(scripts):
            order = ("websocket", "sip_trunk") if n % 2 == 0 else ("sip_trunk", "websocket")
            for transport in order:
                lines = script
                for _attempt in range(2):
                    key = (n, len(script) - len(lines))
                    if transport == "websocket":
                        _, lines = await run_call(servers["websocket"], agents["websocket"], "websocket",
                                                  index, lines, results["websocket"], key=key)  # fmt: skip
                    else:
                        _, lines = await run_sip_call(trunk, ("127.0.0.1", sip_port), index, lines,
                                                      results["sip_trunk"], key=key, known=known)  # fmt: skip
                    index += 1
                    if not lines:
                        break
        wall = time.monotonic() - started
        ours = (sum(process_cpu_seconds(p) for p in pids) - ours0) / wall
        foreign = max(0.0, (machine_busy_seconds() - busy0) / wall - ours)
        busiest = busiest_processes(pids) if foreign > 0.15 else []
        await asyncio.sleep(1.5)  # turn records are written asynchronously
        for transport, result in results.items():
            for call_id in result.call_ids:
                with contextlib.suppress(Exception):
                    result.stored.append(servers[transport].get_call(call_id))
    wers = {t: wer_of(r, scripts) for t, r in results.items()}
    command = "python bench/trunk_latency.py" + (" --quick" if args.quick else "") + (
        f" --calls {args.calls}" if args.calls != 3 and not args.quick else "") + (
        f" --turns {args.turns}" if args.turns < 7 else "")  # fmt: skip
    text = report(results, wers, machine, command, wall, foreign, busiest, load1)
    print()
    print(text)
    print()
    for transport, r in results.items():
        print(
            f"RESULT trunk_latency transport={transport} answered={len(r.answered)} spoken={len(r.turns)} "
            f"p50_ms={percentile(r.client, 50):.0f} wer={wers[transport].rate:.3f}"
        )
    if args.write and not args.quick and args.turns >= 7:
        if min(len(r.answered) for r in results.values()) < 15:
            print("\nfewer than 15 answered turns on a transport: BENCHMARKS.md not updated")
        else:
            write_section(SECTION, text)
            print(f"\nBENCHMARKS.md: section {SECTION!r} updated")
    return 0 if all(r.answered for r in results.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3, help="conversations per transport (default 3)")
    parser.add_argument("--turns", type=int, default=7, help="lines per conversation (default 7, all)")
    parser.add_argument("--quick", action="store_true", help="1 conversation; BENCHMARKS.md not written")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server process (repeatable)")  # fmt: skip
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.calls = 1
    args.turns = max(1, min(args.turns, 7))
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
