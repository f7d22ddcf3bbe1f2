"""A fake OpenAI-compatible LLM for benchmarks, in its own process: it answers every chat request with
what the demo clinic flow would say to the same conversation, streamed after a fixed first-token delay
and then all at once.

    python bench/_fake_llm.py --first-token-ms 300    # prints "URL http://127.0.0.1:<port>/v1", serves

Answering with the flow's own words makes a prompt agent on this LLM do the same work as the flow agent
after the answer is decided (the same sentences to synthesise), so the two differ only by the LLM hop and
what the pipeline does around it. It runs apart from the benchmark client so that the client's real-time
audio and the fake's answers do not share one interpreter (one GIL): the delay the server sees is the
delay asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.support
sys.path.insert(1, str(REPO / "src"))

from callgate.flows import FlowAgent  # noqa: E402
from callgate.flows.demo import demo_flow  # noqa: E402
from callgate.pipeline.interfaces import AgentText  # noqa: E402
from tests.support.fake_openai import FakeOpenAI, Reply, serve, text_events  # noqa: E402

FLOW = demo_flow()


async def flow_says(request: dict[str, Any]) -> str:
    """What the demo flow answers to the request's last caller turn, after the turns before it."""
    agent = FlowAgent(FLOW)
    async for _ in agent.greet():
        pass
    said = ""
    for message in request.get("messages", []):
        if message.get("role") == "user":
            events = [e async for e in agent.respond(str(message.get("content") or ""))]
            said = " ".join(e.text for e in events if isinstance(e, AgentText))
    return said or "Sorry, I didn't catch that."


async def answer(request: dict[str, Any], *, first_token_s: float) -> Reply:
    words = (await flow_says(request)).split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]  # streamed word by word, all at once
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
