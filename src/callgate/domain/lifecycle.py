"""The call state machine: created → connecting → in_progress → ended | failed.

One table of legal transitions for every transport and dialect; each dialect maps these states and end
reasons to its own vocabulary. Transitions are applied by :func:`callgate.domain.calls.transition`,
which records every one as a ``call_event``.
"""

from __future__ import annotations

from enum import StrEnum

from callgate.errors import IllegalTransition


class CallStatus(StrEnum):
    CREATED = "created"
    CONNECTING = "connecting"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (CallStatus.ENDED, CallStatus.FAILED)

    @property
    def is_live(self) -> bool:
        return self in (CallStatus.CONNECTING, CallStatus.IN_PROGRESS)


LIVE = (CallStatus.CONNECTING.value, CallStatus.IN_PROGRESS.value)
"""The statuses of a call that counts against its team's live-call cap."""


class EndReason(StrEnum):
    CALLER_HANGUP = "caller_hangup"
    AGENT_ENDED = "agent_ended"
    MAX_DURATION = "max_duration"
    SILENCE_TIMEOUT = "silence_timeout"
    JOIN_DEADLINE_MISSED = "join_deadline_missed"
    TRANSPORT_LOST = "transport_lost"
    SERVER_ERROR = "server_error"
    API_REQUEST = "api_request"
    TRANSFERRED = "transferred"
    CONCURRENCY_LIMIT = "concurrency_limit"
    TELEPHONY_UNAVAILABLE = "telephony_unavailable"
    """A phone call could not be placed: no telephony transport (SIP trunk, Twilio) is configured."""
    NODE_LOST = "node_lost"
    """The node holding the call stopped without ending it (a crash, a kill): another node, or the
    node itself once restarted, ended it when the node's lease lapsed."""
    NODE_SHUTDOWN = "node_shutdown"
    """The node holding the call was shut down and the call outlived the drain timeout."""
    BUSY = "busy"
    """The called phone was busy (SIP 486/600, Twilio ``busy``)."""
    NO_ANSWER = "no_answer"
    """The called phone rang out unanswered (ring timeout, Twilio ``no-answer``)."""
    DECLINED = "declined"
    """The called party refused the call (SIP 603)."""
    CARRIER_ERROR = "carrier_error"
    """The carrier could not place or keep the call (SIP 4xx/5xx, Twilio ``failed`` or an API error)."""


FAILURE_REASONS = frozenset(
    {
        EndReason.JOIN_DEADLINE_MISSED,
        EndReason.SERVER_ERROR,
        EndReason.CONCURRENCY_LIMIT,
        EndReason.TELEPHONY_UNAVAILABLE,
        EndReason.NODE_LOST,
        EndReason.CARRIER_ERROR,
    }
)

TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    CallStatus.CREATED: frozenset({CallStatus.CONNECTING, CallStatus.ENDED, CallStatus.FAILED}),
    CallStatus.CONNECTING: frozenset({CallStatus.IN_PROGRESS, CallStatus.ENDED, CallStatus.FAILED}),
    CallStatus.IN_PROGRESS: frozenset({CallStatus.ENDED, CallStatus.FAILED}),
    CallStatus.ENDED: frozenset(),
    CallStatus.FAILED: frozenset(),
}


def terminal_status(reason: EndReason) -> CallStatus:
    return CallStatus.FAILED if reason in FAILURE_REASONS else CallStatus.ENDED


def check_transition(old: CallStatus, new: CallStatus, reason: EndReason | None) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` (with ``reason``) is allowed."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"a call cannot go from {old} to {new}")
    if new.is_terminal and reason is None:
        raise IllegalTransition(f"ending a call ({new}) needs an end reason")
    if not new.is_terminal and reason is not None:
        raise IllegalTransition(f"an end reason is only given when a call ends, not for {new}")
    if new.is_terminal and reason is not None and terminal_status(reason) is not new:
        raise IllegalTransition(f"end reason {reason} means {terminal_status(reason)}, not {new}")
