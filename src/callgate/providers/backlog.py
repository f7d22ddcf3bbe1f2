"""What the process's embedded models have been asked and not yet answered, by role ("stt", "vad", ...).

Each model's worker (:class:`~callgate.providers._batching.BatchWorker`) registers here; the node's
admission control samples :func:`backlog` to export it and to refuse new callers before a model falls
behind (see :mod:`callgate.realtime.admission`).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Backlog", "backlog", "register"]


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work submitted to a model and not answered yet."""

    depth: int = 0
    """Requests waiting for the worker or in the batch it runs."""
    oldest_s: float = 0.0
    """How long the oldest of them has waited so far (0 when there is none)."""


class _Reports(Protocol):
    def backlog(self, now: float | None = None) -> Backlog: ...


_workers: dict[str, weakref.WeakSet[_Reports]] = {}
_lock = threading.Lock()


def register(role: str, worker: _Reports) -> None:
    """Count ``worker``'s backlog under ``role`` for as long as it exists."""
    with _lock:
        _workers.setdefault(role, weakref.WeakSet()).add(worker)


def backlog(role: str) -> Backlog:
    """The work waiting for this process's models of ``role``: all their requests, and the oldest one's
    wait."""
    now = time.monotonic()
    with _lock:
        workers = list(_workers.get(role, ()))
    each = [w.backlog(now) for w in workers]
    return Backlog(depth=sum(b.depth for b in each), oldest_s=max((b.oldest_s for b in each), default=0.0))
