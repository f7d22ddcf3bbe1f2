"""A fake OpenAI-compatible LLM for benchmarks, in its own process: every chat request is answered with a
fixed line per caller turn, streamed after a fixed first-token delay and then all at once.

    python bench/_fake_llm.py --first-token-ms 300    # prints "URL http://127.0.0.1:<port>/v1", serves

It runs apart from the benchmark client so that the client's real-time audio and the fake's answers do not
share one interpreter (one GIL): the delay the server sees is the delay asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.support

from tests.support.fake_openai import FakeOpenAI, Reply, serve, text_events

# By the caller's turn in the call: the same line gets the same answer in every call (so the TTS cache
# helps the prompt agent as much as it helps the flow, whose answers repeat too).
ANSWERS = [
    "Of course, I can help with that. Which day would suit you?",
    "Let me check that for you. What time would you like?",
    "That works. Shall I book it for you?",
    "Great, you are booked in. Is there anything else?",
    "You are welcome. Anything else I can do?",
    "We are open from nine to five on weekdays, and nine to noon on Saturday.",
    "Thank you for calling. Goodbye!",
]


def answer(request: dict[str, Any], *, first_token_s: float) -> Reply:
    turn = sum(1 for m in request.get("messages", []) if m.get("role") == "user")
    words = ANSWERS[max(0, turn - 1) % len(ANSWERS)].split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]
    return Reply(events=text_events(*pieces), first_token_delay=first_token_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--first-token-ms", type=int, default=300)
    args = parser.parse_args()
    fake = FakeOpenAI()
    fake.answer = lambda request: answer(request, first_token_s=args.first_token_ms / 1000)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.contextmanager(serve)(fake) as served:
        print(f"URL {served.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
