"""The real-time benchmarks still run: ``bench/latency.py`` (over WebSocket and WebRTC, plus one call of a
prompt agent on the benchmark's fake LLM) and ``bench/sessions.py`` (over WebSocket and WebRTC) and
``bench/trunk_latency.py`` and ``bench/trunk_sessions.py`` (phone calls over the SIP trunk) and
``bench/barge_in.py`` (a backchannel and an interruption over the browser transports and the phone)
in their tiny configurations, each in a subprocess (its own server subprocesses too).

The scripts run at the same time (they only wait on real time: greetings, speech, measurement
windows) so that the module stays short on two cores. They run without priority changes and
never write ``BENCHMARKS.md``. The figures are checked for plausibility only: timing is the benchmarks'
business, not the tests'.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.speech

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240
EQUAL_TERMS = ["--transport", "both", "--server-nice", "0", "--no-client-rt", "--client-nice", "0"]
COMMANDS = {
    "latency": ["bench/latency.py", "--quick", "--turns", "1", "--llm", *EQUAL_TERMS, "--no-write"],
    "sessions": [
        "bench/sessions.py", "--steps", "2", "--probes", "1", "--window", "2", "--settle", "1",
        "--wait-quiet", "0", "--profile", "0", "--no-vad-cost",
        "--server-env", "CALLGATE_SPEECH_WARMUP=false",
        # Cold models (no warm-up) make the first transcript seconds late and loading them lags the
        # event loop: admission on the STT backlog or on loop lag would then refuse the step's second
        # session, which this smoke counts on (admission has its own tests).
        "--server-env", "CALLGATE_MAX_STT_WAIT_MS=0", "--server-env", "CALLGATE_MAX_LOOP_LAG_MS=0",
        *EQUAL_TERMS, "--no-write",
    ],
    "trunk_latency": ["bench/trunk_latency.py", "--quick", "--turns", "1", "--no-write"],
    "barge_in": ["bench/barge_in.py", "--calls", "1", "--no-write"],
    "trunk_sessions": [
        "bench/trunk_sessions.py", "--ramp", "2,4", "--window", "2", "--settle", "1",
        "--server-env", "CALLGATE_SPEECH_WARMUP=false", "--server-env", "CALLGATE_MAX_LOOP_LAG_MS=0",
        "--server-env", "CALLGATE_MAX_STT_WAIT_MS=0", "--no-write",
    ],
}  # fmt: skip
RESULT = re.compile(r"^RESULT (\w+) transport=(\w+) (.*)$", re.M)


def _start(name: str, tmp_path: Path) -> subprocess.Popen[str]:
    # The synthesised caller speech is cached under XDG_CACHE_HOME; keep the user's cache if there is one.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / f"{name}.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, *COMMANDS[name]],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str]]]:
    """Both scripts, started together; ``{name: (exit code, output)}``."""
    tmp = tmp_path_factory.mktemp("bench")
    procs = {name: _start(name, tmp) for name in COMMANDS}
    results: dict[str, tuple[int, str]] = {}
    try:
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            results[name] = (code, (tmp / f"{name}.log").read_text(errors="replace"))
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def figures(output: str, bench: str) -> dict[str, dict[str, float]]:
    """``RESULT <bench> transport=<t> key=value ...`` lines as ``{transport: {key: value}}``."""
    out: dict[str, dict[str, float]] = {}
    for found, transport, rest in RESULT.findall(output):
        if found == bench:
            out[transport] = {k: float(v) for k, v in (kv.split("=", 1) for kv in rest.split())}
    return out


def test_latency_over_both_transports(runs: dict[str, tuple[int, str]]) -> None:
    code, output = runs["latency"]
    assert code == 0, output[-4000:]
    found = figures(output, "latency")
    assert set(found) == {"websocket", "webrtc", "prompt"}, output[-4000:]  # prompt: --llm, over WebSocket
    for transport, values in found.items():
        assert values["answered"] == values["spoken"] == 1, (transport, values)
        # a real answer comes after the caller stops: more than the end-of-turn silence, less than 10 s
        assert 300 < values["p50_ms"] < 10_000, (transport, values)
    # the prompt agent waited for its LLM's first token (300 ms) on top of the pipeline
    assert found["prompt"]["p50_ms"] - found["prompt"]["overhead_p50_ms"] == 300
    assert "| **voice-to-voice, at the client** |" in output
    assert "WebRTC vs WebSocket in this run" in output
    assert "| prompt agent: client latency - 300 ms |" in output


def test_barge_in_at_the_client_over_each_transport(runs: dict[str, tuple[int, str]]) -> None:
    code, output = runs["barge_in"]
    assert code == 0, output[-4000:]
    found = figures(output, "barge_in")
    assert set(found) == {"websocket", "webrtc", "sip_trunk"}, output[-4000:]
    calls = "\n".join(line for line in output.splitlines() if " call 0: " in line)
    for transport, values in found.items():
        assert values["calls"] == values["measured"] == 1, (transport, values, output[-3000:])
        assert values["missed"] == 0, (transport, values, calls)  # the stored greeting turn was cut off
        if values["false_interruptions"]:
            # The backchannel itself became a caller turn and cut the greeting off (with five benchmarks
            # and their servers sharing two cores, a backchannel may be misheard: a rate is the full
            # benchmark's business). The interruption then had nothing left to stop: no stop figure.
            assert values["stop_p50_ms"] == -1, (transport, values, calls)
        else:
            # a plausible stop time (0: the caller began in a pause between sentences), not a timing bound
            assert 0 <= values["stop_p50_ms"] < 2000, (transport, values, calls)
    # at most one of the three backchannels misheard, or something is wrong beyond load
    assert sum(v["false_interruptions"] for v in found.values()) <= 1, calls
    assert "| **barge-in stop at the client (ms)" in output


def test_sessions_over_both_transports(runs: dict[str, tuple[int, str]]) -> None:
    code, output = runs["sessions"]
    assert code == 0, output[-4000:]
    found = figures(output, "sessions")
    assert set(found) == {"websocket", "webrtc"}, output[-4000:]
    for transport, values in found.items():
        # Both sessions joined and lived through the window, agent audio flowed both ways (whether the
        # step passed, i.e. stayed in real time, depends on the machine's load: not asserted).
        assert values["steps"] == 1 and values["last_sessions"] == 2, (transport, values, output[-3000:])
        assert values["last_agent_frames"] > 0 and values["last_client_frames"] > 0, (transport, values)
        assert values["last_cpu_per_session_pct"] > 0, (transport, values)
    assert "| 2 (1) |" in output  # the step's row of the table


def test_turn_taking_benchmark_in_its_tiny_configuration(tmp_path: Path) -> None:
    """``bench/turns.py --limit 1``: one utterance of each kind, the three configurations side by side."""
    pytest.importorskip("callgate.providers.smart_turn")
    try:
        from callgate.providers.smart_turn import model_path

        model_path()
    except Exception as exc:  # the turns extra is not installed
        pytest.skip(str(exc))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", "")}
    if not env["XDG_CACHE_HOME"]:
        del env["XDG_CACHE_HOME"]
    done = subprocess.run(
        [sys.executable, "bench/turns.py", "--limit", "1", "--no-write"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    modes = {
        m.group(1): m.group(2) for m in re.finditer(r"^RESULT turns mode=(\w+) (.*)$", done.stdout, re.M)
    }
    assert set(modes) == {"before", "silence", "semantic"}, done.stdout[-4000:]
    for mode, rest in modes.items():
        values = {k: float(v) for k, v in (kv.split("=", 1) for kv in rest.split())}
        assert values["real"] == 1 and values["paused"] == 1 and values["over_agent"] == 2, (mode, values)
        assert 0 < values["endpoint_p50_ms"] < 3000, (mode, values)
    assert "| barge-in stop p95 |" in done.stdout


def test_trunk_latency_beside_websocket(runs: dict[str, tuple[int, str]]) -> None:
    code, output = runs["trunk_latency"]
    assert code == 0, output[-4000:]
    found = figures(output, "trunk_latency")
    assert set(found) == {"websocket", "sip_trunk"}, output[-4000:]
    for transport, values in found.items():
        assert values["answered"] == values["spoken"] == 1, (transport, values)
        assert 300 < values["p50_ms"] < 10_000, (transport, values)
        assert 0 <= values["wer"] < 1, (transport, values)  # the line was heard, if not word for word
    assert "| **voice-to-voice, at the client (ms)** |" in output
    assert "| **WER of the caller's turns** |" in output


def test_trunk_sessions(runs: dict[str, tuple[int, str]]) -> None:
    code, output = runs["trunk_sessions"]
    assert code == 0, output[-4000:]
    (values,) = figures(output, "trunk_sessions").values()
    # The calls were placed and lived through the window, the server's RTP reached them (whether the
    # step stayed in real time depends on the machine's load: not asserted).
    assert values["steps"] >= 1 and values["last_up"] == values["last_calls"] >= 2, values
    assert values["last_packets"] > 0 and values["last_server_cores"] > 0, values
    assert "| 2 | 2 |" in output  # the first step's row of the table


def _bench(*argv: str) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def _results(output: str, bench: str, key: str) -> dict[str, dict[str, float]]:
    found = re.finditer(rf"^RESULT {bench} {key}=(\w+) (.*)$", output, re.M)
    return {
        m.group(1): {k: float(v) for k, v in (kv.split("=", 1) for kv in m.group(2).split())} for m in found
    }


def test_short_room_sounds_over_the_agent() -> None:
    """``bench/turns.py --short-sounds``: one sound of each kind over the agent; none cuts it off."""
    output = _bench("bench/turns.py", "--short-sounds", "--sounds-per-kind", "1", "--hold-ms", "40")
    kinds = _results(output, "sounds hold_ms=40", "kind")
    assert len(kinds) == 9 and kinds["all"]["n"] == 8, output[-4000:]
    assert all(v["cut_off"] == 0 for v in kinds.values()), kinds
    assert kinds["all"]["held"] <= 8 and kinds["click"]["held"] == 0, kinds


def test_backchannels_heard_in_its_tiny_configuration() -> None:
    """``bench/backchannels.py --limit``: the first text of each kind, two voices, three ways."""
    pytest.importorskip("faster_whisper")
    output = _bench("bench/backchannels.py", "--limit")
    kinds = _results(output, "backchannels", "kind")
    assert set(kinds) == {"backchannel", "interruption", "short_answer", "one_word"}, output[-4000:]
    assert all(v["n"] == 6 for v in kinds.values()), kinds
    assert kinds["interruption"]["decided"] == 0, kinds  # "Wait, I need to change the time."
    assert kinds["backchannel"]["decided"] >= kinds["backchannel"]["first"], kinds
    assert "| the decision (short words heard again) |" in output
