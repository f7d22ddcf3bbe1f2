"""Text-to-speech by running ``espeak-ng --stdout`` as an async subprocess.

Robotic but tiny and fast (real-time factor ~0.004). Audio is streamed while espeak-ng writes it;
cancelling the iteration kills the process. Text goes in on stdin, never on the command line, so a
caller's words can never become an option.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import struct
from collections.abc import AsyncIterator

from callgate.errors import ProviderError, ProviderUnavailable
from callgate.pipeline.interfaces import TTS, TTSCapabilities

__all__ = ["EspeakTTS"]

_CHUNK = 4096


def find_espeak() -> str | None:
    """Path of the espeak-ng (or espeak) program, if installed."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


async def _read_wav_header(stdout: asyncio.StreamReader) -> int:
    """Skip the RIFF header up to the ``data`` chunk; return the sample rate."""
    riff = await stdout.readexactly(12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise ProviderError("espeak-ng did not write a WAV file")
    sample_rate = 0
    while True:
        chunk_id, size = struct.unpack("<4sI", await stdout.readexactly(8))
        if chunk_id == b"data":
            return sample_rate
        body = await stdout.readexactly(size + (size & 1))
        if chunk_id == b"fmt ":
            channels, sample_rate, bits = struct.unpack("<2xHI6xH", body[:16])
            if channels != 1 or bits != 16:
                raise ProviderError(f"espeak-ng wrote {channels} channel(s) of {bits} bits, not mono PCM16")


class EspeakTTS(TTS):
    """espeak-ng voice (e.g. ``en-us``); ``rate`` in words per minute. PCM16 mono at 22 050 Hz."""

    def __init__(
        self, *, voice: str = "en-us", rate: int = 165, pitch: int = 50, executable: str | None = None
    ) -> None:
        self._executable = executable or find_espeak()
        if self._executable is None:
            raise ProviderUnavailable("espeak-ng is not installed (e.g. apt-get install espeak-ng)")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]{0,39}", voice):  # never an option
            raise ValueError(f"not an espeak-ng voice name: {voice!r}")
        self._args = ["--stdout", "--stdin", "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch))]
        self.capabilities = TTSCapabilities(sample_rate=22050, streaming=True)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        assert self._executable is not None
        try:
            process = await asyncio.create_subprocess_exec(
                self._executable,
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ProviderUnavailable(f"cannot run espeak-ng: {exc}") from exc
        assert process.stdin is not None and process.stdout is not None
        try:
            # espeak-ng reads stdin line by line; one line keeps the sentence melody intact.
            process.stdin.write(" ".join(text.split()).encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
            try:
                sample_rate = await _read_wav_header(process.stdout)
            except asyncio.IncompleteReadError as exc:
                raise ProviderError("espeak-ng ended before writing audio") from exc
            if sample_rate != self.capabilities.sample_rate:
                raise ProviderError(f"espeak-ng wrote {sample_rate} Hz, expected 22050 Hz")
            odd = b""
            while chunk := await process.stdout.read(_CHUNK):
                chunk = odd + chunk
                cut = len(chunk) - len(chunk) % 2
                odd = chunk[cut:]
                if cut:
                    yield chunk[:cut]
            if await process.wait() != 0:
                raise ProviderError(f"espeak-ng exited with status {process.returncode}")
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                # Reap the child so no zombie (or ResourceWarning) is left behind, even on cancel.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(process.wait())
