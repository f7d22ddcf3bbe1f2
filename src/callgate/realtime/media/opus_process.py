"""The Opus decoder process: the framing it speaks and its main loop (the event-loop side is ``decoding.py``).

Run as a script, by path, with the path of libopus as its one argument::

    python -I -S .../callgate/realtime/media/opus_process.py /path/to/libopus.so.0

By path and with ``-S`` so that it imports nothing but the standard library: ``python -m`` would run the
``callgate.realtime.media`` package's ``__init__`` (aiortc, PyAV), ~40 MB and a second of start-up for a
process that needs ctypes and libopus only. This module therefore imports nothing from callgate.

It reads batches on stdin and answers each with one batch on stdout, in the order of its items; it exits
when stdin closes (its parent stopped it, or died). While batches keep coming it polls for them instead of
waiting on the pipe: a write that wakes a process blocked in ``read`` cost the event loop ~150 us on this
2-core VM (the wake-up is charged to the writer), several times what the batch's decoding cost it before;
a write to a pipe nobody waits on costs a few microseconds.

It keeps one libopus decoder per stream id, created with the rate and channels of the stream's first
packet and freed by a close item.

A batch is ``BATCH`` (body length, item count) and its body. Items to the process are ``ITEM`` (op,
stream id, rate, channels, payload length) followed by the payload; ``OP_DECODE`` items are answered, in
order, by ``RESULT`` (status, PCM length) followed by the PCM16; ``OP_CLOSE`` items are not answered. A
packet libopus refuses is answered ``STATUS_FAILED`` with no PCM (the parent knows its duration).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import struct
import sys
import time
from typing import BinaryIO

BATCH = struct.Struct("<II")
ITEM = struct.Struct("<BIIBH")
RESULT = struct.Struct("<BI")
OP_DECODE, OP_CLOSE = 0, 1
STATUS_OK, STATUS_FAILED = 0, 1
POLL_INTERVAL_S = 0.001
"""While batches keep coming, the process looks for the next one this often (it does not wait on the pipe)."""
IDLE_POLLS = 50
"""Empty polls (50 ms without a batch) before it waits on the pipe, to be woken by the next batch."""
MAX_FRAME_MS = 120
"""The longest frame one Opus packet can carry."""


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the few libopus functions callgate uses on ``lib`` (raises AttributeError if it is not
    libopus)."""
    create = lib.opus_decoder_create
    create.restype = ctypes.c_void_p
    create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
    ]  # fmt: skip
    lib.opus_decoder_destroy.restype = None
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    return lib


class Decoders:
    """The process's decoders by stream id, and one output buffer they all decode into."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._states: dict[int, tuple[int, int, int]] = {}  # stream -> (state, max samples, channels)
        self._buffer = ctypes.create_string_buffer(48000 * MAX_FRAME_MS // 1000 * 2 * 2)

    def decode(self, stream: int, rate: int, channels: int, payload: bytes) -> bytes | None:
        """``payload``'s PCM16, or None if libopus refuses it (or the stream's decoder cannot be made)."""
        entry = self._states.get(stream)
        if entry is None:
            error = ctypes.c_int(0)
            state = self._lib.opus_decoder_create(rate, channels, ctypes.byref(error))
            if error.value != 0 or not state:
                return None
            entry = self._states[stream] = (state, rate * MAX_FRAME_MS // 1000, channels)
        state, max_samples, channels = entry
        samples = self._lib.opus_decode(state, payload, len(payload), self._buffer, max_samples, 0)
        if samples < 0:
            return None
        return ctypes.string_at(self._buffer, samples * channels * 2)

    def close(self, stream: int) -> None:
        entry = self._states.pop(stream, None)
        if entry is not None:
            self._lib.opus_decoder_destroy(entry[0])


def answer(decoders: Decoders, body: bytes, count: int) -> bytes:
    """The reply to one batch (``BATCH`` header included)."""
    out: list[bytes] = []
    answered, offset = 0, 0
    for _ in range(count):
        op, stream, rate, channels, length = ITEM.unpack_from(body, offset)
        offset += ITEM.size
        payload = body[offset : offset + length]
        offset += length
        if op == OP_CLOSE:
            decoders.close(stream)
            continue
        pcm = decoders.decode(stream, rate, channels, payload)
        answered += 1
        if pcm is None:
            out.append(RESULT.pack(STATUS_FAILED, 0))
        else:
            out.append(RESULT.pack(STATUS_OK, len(pcm)))
            out.append(pcm)
    reply = b"".join(out)
    return BATCH.pack(len(reply), answered) + reply


def serve(decoders: Decoders, requests: int, replies: BinaryIO) -> None:
    """Answer the batches read from the file descriptor ``requests`` until it ends: polled every
    ``POLL_INTERVAL_S`` while batches keep coming, waited on after ``IDLE_POLLS`` empty polls."""
    os.set_blocking(requests, False)
    received, chunk, empty = bytearray(), bytearray(1 << 17), 0
    while True:
        try:
            size = os.readv(requests, [chunk])
        except BlockingIOError:
            empty += 1
            if empty >= IDLE_POLLS:
                select.select([requests], [], [])
                empty = 0
                continue
        else:
            if not size:
                return
            empty = 0
            received += chunk[:size]
            reply, used = answer_all(decoders, received)
            del received[:used]
            if reply:
                replies.write(reply)
                replies.flush()
        time.sleep(POLL_INTERVAL_S)


def answer_all(decoders: Decoders, received: bytearray) -> tuple[bytes, int]:
    """The replies to every complete batch at the start of ``received``, and how many bytes they took."""
    replies, offset = [], 0
    while len(received) - offset >= BATCH.size:
        length, count = BATCH.unpack_from(received, offset)
        end = offset + BATCH.size + length
        if len(received) < end:
            break
        replies.append(answer(decoders, bytes(received[offset + BATCH.size : end]), count))
        offset = end
    return b"".join(replies), offset


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the server; we stop when stdin closes
    try:
        lib = declare(ctypes.CDLL(argv[0]))
    except (IndexError, OSError, AttributeError) as exc:
        sys.stderr.write(f"opus_process: cannot load libopus: {exc}\n")
        return 1
    with contextlib.suppress(BrokenPipeError):  # the parent went away mid-answer
        serve(Decoders(lib), sys.stdin.fileno(), sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
