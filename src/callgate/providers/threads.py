"""Native thread pools of the process.

numpy's BLAS (OpenBLAS) starts one worker thread per core the first time a matrix product is large
enough (Whisper's and Smart Turn's mel spectrograms are), and those threads then spin, waiting for more
work, for a while after every product. In a call server that never does large algebra, this only costs:
measured on 2 cores, Whisper tiny.en used twice the CPU time per utterance (encoder 61 ms against 30,
decoder 52 against 26) while the wall time stayed the same, because a second core spun beside the
transcription — a core the event loop and the other engines needed.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["limit_blas_threads"]

log = logging.getLogger(__name__)

_done = False
_lock = threading.Lock()


def limit_blas_threads() -> None:
    """Run numpy's BLAS on the calling thread only, process-wide (once; later calls do nothing).

    Needs the BLAS library loaded, which importing numpy does."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        import numpy  # noqa: F401  (loads the BLAS library threadpoolctl adjusts)
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        threadpool_limits(limits=1, user_api="blas")
        log.debug("numpy's BLAS limited to one thread")
