"""Prompt agents: an LLM with a system prompt, chat history and two call-control tools.

Works with any :class:`~callgate.pipeline.interfaces.LLM`. The model may call ``end_call`` (the call
ends after what it has said) and, when the agent has a transfer target, ``transfer_call``. The
target is the agent's setting, never a value from the model, so a caller cannot talk the model into
dialling somewhere else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from callgate.flows.text import render
from callgate.pipeline.interfaces import (
    LLM,
    AgentEndCall,
    AgentEngine,
    AgentEvent,
    AgentText,
    AgentTransfer,
    ChatMessage,
    ToolSpec,
)

__all__ = ["END_CALL", "TRANSFER_CALL", "PromptAgent"]

log = logging.getLogger(__name__)

END_CALL = ToolSpec(
    name="end_call",
    description="End the phone call. Say goodbye first, in the same answer. Use it when the caller is "
    "done, says goodbye, or asks to hang up.",
    parameters={
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "Why the call ends, in a few words."}},
    },
)
TRANSFER_CALL = ToolSpec(
    name="transfer_call",
    description="Transfer the caller to a human colleague. Tell the caller you are transferring them "
    "first, in the same answer. Use it when the caller asks for a person or you cannot help.",
    parameters={"type": "object", "properties": {}},
)


class PromptAgent(AgentEngine):
    """One call's conversation with ``llm``.

    ``prompt`` and ``initial_message`` may use ``{{variables}}``. ``max_messages`` bounds the history
    sent with each request (the oldest turns are dropped; the system prompt always stays).
    """

    def __init__(
        self,
        llm: LLM,
        *,
        prompt: str,
        variables: Mapping[str, Any] | None = None,
        initial_message: str | None = None,
        transfer_target: str | None = None,
        allow_end_call: bool = True,
        max_messages: int = 60,
    ) -> None:
        self._llm = llm
        self._values = {k: str(v) for k, v in (variables or {}).items()}
        self._system = ChatMessage(role="system", content=render(prompt, self._values))
        self._initial = render(initial_message, self._values) if initial_message else ""
        self._transfer_target = transfer_target
        self._max_messages = max_messages
        tools: list[ToolSpec] = []
        if allow_end_call:
            tools.append(END_CALL)
        if transfer_target:
            tools.append(TRANSFER_CALL)
        self._tools = tuple(tools) if llm.capabilities.tools else ()
        self.history: list[ChatMessage] = []
        """The conversation so far (without the system prompt), as the model will next see it."""

    @property
    def system_prompt(self) -> str:
        return self._system.content

    async def greet(self) -> AsyncIterator[AgentEvent]:
        if self._initial:
            self.history.append(ChatMessage(role="assistant", content=self._initial))
            yield AgentText(self._initial)

    async def respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        self.history.append(ChatMessage(role="user", content=user_text))
        self._trim()
        said: list[str] = []
        final: AgentEndCall | AgentTransfer | None = None
        try:
            async for chunk in self._llm.chat([self._system, *self.history], tools=self._tools):
                if chunk.text:
                    said.append(chunk.text)
                    yield AgentText(chunk.text)
                for call in chunk.tool_calls:
                    if call.name == END_CALL.name:
                        final = AgentEndCall(reason="agent_ended")
                    elif call.name == TRANSFER_CALL.name and self._transfer_target:
                        final = AgentTransfer(target=self._transfer_target)
                    else:
                        log.warning("prompt agent: ignoring unknown tool call %r", call.name)
        finally:
            # Also when the answer is abandoned mid-stream: keep what was produced so that
            # on_interrupted() can cut it down to what the caller heard.
            if said:
                self.history.append(ChatMessage(role="assistant", content="".join(said)))
        if final is not None:
            yield final

    def on_interrupted(self, spoken_text: str) -> None:
        if not self.history or self.history[-1].role != "assistant":
            return
        if spoken_text.strip():
            self.history[-1] = ChatMessage(role="assistant", content=spoken_text.strip())
        else:
            self.history.pop()  # nothing was heard: as if never said

    def _trim(self) -> None:
        excess = len(self.history) - self._max_messages
        if excess > 0:
            del self.history[:excess]
            while self.history and self.history[0].role != "user":
                self.history.pop(0)  # start the window on a caller turn
