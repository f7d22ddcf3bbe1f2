"""Agent brains: scripted flows (no LLM) and prompt agents (any LLM).

:func:`validate_flow` checks a flow definition; :class:`FlowAgent` runs one for a call;
:class:`PromptAgent` runs a system prompt on an LLM. :mod:`callgate.flows.demo` holds the demo agent.
"""

from callgate.flows.engine import FlowAgent
from callgate.flows.prompt import PromptAgent
from callgate.flows.schema import Flow, validate_flow

__all__ = ["Flow", "FlowAgent", "PromptAgent", "validate_flow"]
