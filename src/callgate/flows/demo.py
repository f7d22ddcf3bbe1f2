"""The demo agent: the receptionist of Maple Street Clinic, as a flow.

It greets, tells the opening hours, books an appointment (day and time, read back for a yes/no
confirmation), puts the caller through to the front desk on request, and says goodbye. Prompts are
written for the ear: short sentences, numbers as words.
"""

from __future__ import annotations

from typing import Any

from callgate.flows.schema import Flow, validate_flow

__all__ = ["DEMO_AGENT", "DEMO_FLOW", "demo_flow"]

_ANYTHING_ELSE = "Is there anything else I can help you with?"

DEMO_FLOW: dict[str, Any] = {
    "name": "Maple Street Clinic receptionist",
    "start": "greeting",
    "variables": {
        "clinic_name": "Maple Street Clinic",
        "front_desk": "front-desk",
    },
    "slots": {
        "day": {
            "type": "date",
            "prompt": "What day would you like to come in?",
            "reprompt": "Which day suits you? For example, tomorrow, or Monday.",
        },
        "time": {
            "type": "time",
            "prompt": "And what time would suit you?",
            "reprompt": "What time would you like? For example, ten in the morning, or three p.m.",
        },
    },
    "intents": [
        {
            "name": "book",
            "goto": "book",
            "keywords": [
                "book",
                "appointment",
                "make an appointment",
                "schedule",
                "see a doctor",
                "see the doctor",
                "come in",
                "reservation",
                "booking",
            ],
        },
        {
            "name": "hours",
            "goto": "hours",
            "keywords": ["hours", "open", "opening", "close", "closing", "what time do you", "when are you"],
        },
        {
            "name": "human",
            "goto": "human",
            "keywords": [
                "human",
                "person",
                "someone",
                "somebody",
                "receptionist",
                "operator",
                "front desk",
                "speak to",
                "talk to",
                "real person",
                "agent",
            ],
        },
        {
            "name": "goodbye",
            "goto": "goodbye",
            "keywords": [
                "goodbye",
                "bye",
                "that's all",
                "that is all",
                "nothing else",
                "no thanks",
                "no thank you",
                "hang up",
                "that's it",
            ],
        },
    ],
    "states": {
        "greeting": {
            "say": "Hello, and thank you for calling {{clinic_name}}. "
            "I can book an appointment, tell you our opening hours, or put you through to the front desk. "
            "How can I help?",
            "reprompt": "You can say: book an appointment, opening hours, or speak to someone.",
        },
        "menu": {
            "say": "What else can I help you with?",
            "reprompt": "You can say: book an appointment, opening hours, or speak to someone.",
        },
        "hours": {
            "say": "We are open Monday to Friday, from eight in the morning until six in the evening, "
            f"and on Saturday from nine until noon. {_ANYTHING_ELSE}",
            "intents": [
                {"name": "no", "answer": "no", "goto": "goodbye"},
                {"name": "yes", "answer": "yes", "goto": "menu"},
            ],
            "reprompt": _ANYTHING_ELSE,
        },
        "book": {"collect": ["day", "time"], "next": "confirm"},
        "confirm": {
            "say": "So that's {{day}} at {{time}}. Shall I book that for you?",
            "intents": [
                {"name": "yes", "answer": "yes", "goto": "booked"},
                {"name": "no", "answer": "no", "goto": "rebook"},
            ],
            "reprompt": "Shall I book {{day}} at {{time}}? Please say yes or no.",
        },
        "rebook": {"say": "No problem, let's try again.", "next": "book"},
        "booked": {
            "say": "You're booked in for {{day}} at {{time}}. We look forward to seeing you. "
            + _ANYTHING_ELSE,
            "set": {"appointment_booked": True},
            "intents": [
                {"name": "no", "answer": "no", "goto": "goodbye"},
                {"name": "yes", "answer": "yes", "goto": "menu"},
            ],
            "reprompt": _ANYTHING_ELSE,
        },
        "human": {
            "say": "Of course. Please hold while I put you through to the front desk.",
            "transfer": "{{front_desk}}",
        },
        "trouble": {
            "say": "I'm sorry, I'm having trouble understanding. Let me put you through to the front desk.",
            "transfer": "{{front_desk}}",
        },
        "goodbye": {"say": "Thank you for calling {{clinic_name}}. Goodbye!", "end": True},
    },
    "fallback": "trouble",
}

DEMO_AGENT: dict[str, Any] = {
    "name": "Maple Street Clinic",
    "flow": DEMO_FLOW,
    "variables": dict(DEMO_FLOW["variables"]),
}
"""An agent definition with the demo flow (the lead maps it onto the agent model)."""


def demo_flow() -> Flow:
    return validate_flow(DEMO_FLOW)
