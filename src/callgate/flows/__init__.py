"""Scripted conversations ("flows") that run with no LLM.

:func:`validate_flow` checks a definition; :class:`~callgate.flows.engine.FlowAgent` runs one.
"""

from callgate.flows.schema import Flow, validate_flow

__all__ = ["Flow", "validate_flow"]
