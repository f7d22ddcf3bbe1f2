"""baresip, a real SIP user agent, as the far end of telephony tests (a phone, a PBX, a carrier's customer).

Each :class:`Baresip` runs the Debian ``baresip`` binary in its own config folder, on loopback only:
SIP on a free UDP+TCP port, RTP in its own port range (never callgate's), G.711 only. It is driven over
``ctrl_tcp`` (JSON in netstrings): :meth:`Baresip.dial`, :meth:`Baresip.hangup`, :meth:`Baresip.accept`,
:meth:`Baresip.send_dtmf`, :meth:`Baresip.set_source`; its events (``CALL_INCOMING``,
``CALL_ESTABLISHED``, ``CALL_CLOSED`` …) arrive in :attr:`Baresip.events`. What it says comes from a WAV
file (``aufile``, 8 kHz mono; silence when there is none); what it hears is recorded by ``sndfile``
(:meth:`Baresip.heard`).

    async with Baresip(tmp_path, user="alice") as phone:
        await phone.dial("sip:+14155550123@127.0.0.1:5060;transport=tcp")
        await phone.wait_event("CALL_ESTABLISHED")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import wave
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from tests.support.browser import make_speech_wav
from tests.support.rtvi_client import nonsilent_seconds
from tests.support.services import ServiceError, free_port, worker_port_offset

__all__ = ["Baresip", "free_udp_tcp_port", "phone_wav", "silence_wav"]

MODULES = ("g711", "aufile", "aubridge", "sndfile", "account", "menu", "ctrl_tcp")


def free_udp_tcp_port() -> int:
    """A port on 127.0.0.1 free for both UDP and TCP right now."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServiceError("no port is free for both UDP and TCP")


def phone_wav(
    text: str,
    path: Path,
    *,
    engine: Literal["espeak", "piper"] = "espeak",
    lead_silence_s: float = 0.3,
    tail_silence_s: float = 3.0,
) -> Path:
    """``text`` spoken (espeak-ng or piper, then sox) as the 8 kHz mono 16-bit WAV ``aufile`` plays."""
    return make_speech_wav(
        text, path, rate=8000, engine=engine, lead_silence_s=lead_silence_s, tail_silence_s=tail_silence_s
    )


def silence_wav(path: Path, seconds: float = 600.0) -> Path:
    """Long 8 kHz silence: what a phone "says" while the test waits (a WAV that ends stops its audio)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(int(8000 * 2 * seconds)))
    return path


def _netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


class Baresip:
    """One baresip process (see the module docstring). Use as an async context manager."""

    def __init__(
        self,
        tmp: Path,
        *,
        user: str = "phone",
        answer: str = "auto",
        rtp_ports: tuple[int, int] = (30000, 30999),
        source: Path | None = None,
        extra_account: str = "",
    ) -> None:
        self.user = user
        self.dir = tmp / f"baresip-{user}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records = self.dir / "heard"
        self.records.mkdir(exist_ok=True)
        self._answer = answer
        self._rtp_ports = rtp_ports
        self._source = source or silence_wav(self.dir / "silence.wav")
        self._extra_account = extra_account
        self.sip_port = 0
        self.ctrl_port = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.all_events: list[dict[str, Any]] = []
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tokens = 0
        self._link_dir: Path | None = None

    @property
    def uri(self) -> str:
        """Where to call this phone (UDP)."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def _configure(self) -> None:
        low, high = (port + worker_port_offset() for port in self._rtp_ports)
        modules = "\n".join(f"module {m}.so" for m in MODULES)
        (self.dir / "config").write_text(
            f"""poll_method epoll
sip_listen 127.0.0.1:{self.sip_port}
net_interface 127.0.0.1
rtp_ports {low}-{high}
rtp_timeout 0
audio_player aubridge,phone
audio_source aufile,{self._source}
audio_alert aubridge,alert
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
module_path /usr/lib/baresip/modules
{modules}
snd_path {self._short_records()}
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
"""
        )
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1>;regint=0;answermode={self._answer};"
            f"audio_codecs=PCMU,PCMA{self._extra_account}\n"
        )
        (self.dir / "contacts").write_text("")

    def _short_records(self) -> Path:
        """A short path to :attr:`records` for baresip's sndfile module, which silently records nothing
        when a file's path passes ~128 characters (pytest-xdist's longer temporary paths did)."""
        if self._link_dir is None:
            self._link_dir = Path(tempfile.mkdtemp(prefix="cg-bs-"))
            (self._link_dir / "h").symlink_to(self.records)
        return self._link_dir / "h"

    async def start(self) -> Self:
        binary = shutil.which("baresip")
        if binary is None:
            raise ServiceError(
                "baresip not found; install it with `apt-get install baresip` (scripts/test.sh does)"
            )
        for attempt in range(3):
            self.sip_port, self.ctrl_port = free_udp_tcp_port(), free_port()
            self._configure()
            with (self.dir / "baresip.log").open("ab") as log:  # the child keeps its own descriptor
                self._process = subprocess.Popen(
                    [binary, "-f", str(self.dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                await self._connect()
                return self
            except ServiceError:
                self._kill()
                if attempt == 2:
                    raise
        return self

    async def _connect(self) -> None:
        for _ in range(200):
            if self._process is not None and self._process.poll() is not None:
                raise ServiceError(f"baresip exited: {self.log_tail()}")
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self._reader_task = asyncio.create_task(self._read(reader), name=f"baresip-{self.user}")
            return
        raise ServiceError(f"baresip's ctrl_tcp did not open: {self.log_tail()}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int((await reader.readuntil(b":"))[:-1])
                message = json.loads((await reader.readexactly(length + 1))[:-1])
                if message.get("response"):
                    future = self._responses.pop(str(message.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("event"):
                    self.all_events.append(message)
                    self.events.put_nowait(message)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.dir / "baresip.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def command(self, command: str, params: str = "", *, timeout: float = 10.0) -> dict[str, Any]:
        """Run a baresip command (``dial``, ``hangup``, ``accept``, ``sndcode``, ``ausrc`` …)."""
        assert self._writer is not None, "start() first"
        self._tokens += 1
        token = str(self._tokens)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        self._writer.write(_netstring({"command": command, "params": params, "token": token}))
        await self._writer.drain()
        async with asyncio.timeout(timeout):
            return await future

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def hangup(self) -> None:
        await self.command("hangup")

    async def accept(self) -> None:
        await self.command("accept")

    async def send_dtmf(self, digits: str, *, gap_s: float = 0.4) -> None:
        """Press keys (RFC 4733 telephone-events, as baresip sends them)."""
        for digit in digits:
            await self.command("sndcode", digit)
            await asyncio.sleep(gap_s)

    async def set_source(self, wav: Path) -> None:
        """Say ``wav`` (8 kHz mono) from now on in the current call."""
        await self.command("ausrc", f"aufile,{wav}")

    async def wait_event(self, *types: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next event of one of ``types`` (others are skipped; all stay in :attr:`all_events`)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.get("type") in types:
                    return event

    def heard(self) -> np.ndarray:
        """Everything this phone heard in its calls so far, as int16 samples at 8 kHz (from sndfile's
        ``*-dec.wav``, read even while the call runs: the header's length is not trusted)."""
        chunks = []
        for path in sorted(self.records.glob("*-dec.wav")):
            data = path.read_bytes()
            at = data.find(b"data")
            if at >= 0:
                body = data[at + 8 :]
                chunks.append(np.frombuffer(body[: len(body) & ~1], dtype="<i2"))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    async def wait_heard(self, seconds: float, *, timeout: float = 60.0) -> float:
        """Wait until this phone has heard ``seconds`` of non-silent audio; returns how much it heard."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (heard := nonsilent_seconds(self.heard(), 8000)) < seconds:
            if loop.time() > deadline:
                raise AssertionError(f"{self.user} heard only {heard:.2f} s of sound")
            await asyncio.sleep(0.1)
        return heard

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        await asyncio.to_thread(self._kill)
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)  # the link only: the recordings stay
            self._link_dir = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
