"""The demo receptionist flow, turn by turn, through the AgentEngine interface."""

from __future__ import annotations

from datetime import date
from typing import Any

from callgate.flows import FlowAgent, validate_flow
from callgate.flows.demo import demo_flow
from callgate.pipeline.interfaces import AgentData, AgentEndCall, AgentEvent, AgentText, AgentTransfer

SUNDAY = date(2026, 11, 22)


def agent(**variables: Any) -> FlowAgent:
    return FlowAgent(demo_flow(), variables=variables, today=lambda: SUNDAY)


async def turn(a: FlowAgent, said: str | None = None) -> list[AgentEvent]:
    stream = a.greet() if said is None else a.respond(said)
    return [event async for event in stream]


def said(events: list[AgentEvent]) -> str:
    return " ".join(e.text for e in events if isinstance(e, AgentText))


async def test_greeting_uses_variables() -> None:
    events = await turn(agent(clinic_name="Oak Lane Surgery"))
    assert len(events) == 1
    assert said(events).startswith("Hello, and thank you for calling Oak Lane Surgery.")


async def test_booking_sentence_understood_in_one_turn() -> None:
    a = agent()
    await turn(a)
    events = await turn(a, "I would like to book an appointment for tomorrow at three pm")
    assert events[0] == AgentData({"day": "2026-11-23", "time": "15:00"})
    reply = said(events)
    assert "tomorrow" in reply and "three p.m." in reply and reply.endswith("Shall I book that for you?")
    assert a.state == "confirm"

    events = await turn(a, "Yes, please.")
    assert events[0] == AgentData({"day": "2026-11-23", "time": "15:00", "appointment_booked": True})
    assert said(events).startswith("You're booked in for tomorrow at three p.m.")

    events = await turn(a, "No, that's all.")
    assert said(events) == "Thank you for calling Maple Street Clinic. Goodbye!"
    assert events[-1] == AgentEndCall()
    assert a.finished and await turn(a, "hello?") == []


async def test_whisper_style_transcript() -> None:
    a = agent()
    await turn(a)
    events = await turn(a, "I would like to book an appointment for tomorrow at 3 p.m. Thank you.")
    assert "tomorrow at three p.m." in said(events)


async def test_slots_asked_one_by_one_with_reprompt() -> None:
    a = agent()
    await turn(a)
    assert said(await turn(a, "Can I make an appointment?")) == "What day would you like to come in?"
    events = await turn(a, "Friday")
    assert said(events) == "And what time would suit you?"
    assert events[0] == AgentData({"day": "2026-11-27"})
    assert said(await turn(a, "erm")).startswith("Sorry, I didn't catch that. What time would you like?")
    events = await turn(a, "half past two")
    assert "Friday the twenty-seventh at two thirty p.m." in said(events)
    # "No" starts over: the slots are cleared and asked again.
    events = await turn(a, "No")
    assert events[0] == AgentData({"day": None, "time": None})
    assert said(events) == "No problem, let's try again. What day would you like to come in?"
    events = await turn(a, "the 5th at noon")
    assert "Saturday the fifth of December at noon" in said(events)


async def test_hours_then_goodbye() -> None:
    a = agent()
    await turn(a)
    assert "eight in the morning until six in the evening" in said(
        await turn(a, "What are your opening hours?")
    )
    events = await turn(a, "bye")
    assert isinstance(events[-1], AgentEndCall)


async def test_asking_for_a_human_transfers() -> None:
    a = agent(front_desk="sip:desk@clinic.example")
    await turn(a)
    events = await turn(a, "Can I talk to a real person?")
    assert said(events) == "Of course. Please hold while I put you through to the front desk."
    assert events[-1] == AgentTransfer(target="sip:desk@clinic.example")


async def test_too_many_misses_fall_back() -> None:
    a = agent()
    await turn(a)
    for _ in range(2):
        assert said(await turn(a, "purple monkey dishwasher")).startswith("Sorry, I didn't catch that.")
    events = await turn(a, "purple monkey dishwasher")
    assert "having trouble understanding" in said(events)
    assert events[-1] == AgentTransfer(target="front-desk")


async def test_caller_speaking_first_and_fuzzy_keywords() -> None:
    a = agent()
    events = await turn(a, "I need an apointment")  # no greet(); typo from STT
    assert said(events) == "What day would you like to come in?"


async def test_name_and_yes_no_slots_in_a_custom_flow() -> None:
    flow = validate_flow(
        {
            "start": "ask",
            "slots": {
                "name": {"type": "name", "prompt": "What's your name?"},
                "ok": {"type": "yes_no", "prompt": "Shall we text you, {{name}}?"},
            },
            "states": {
                "ask": {"say": "Welcome to {{place}}.", "collect": ["name", "ok"], "next": "done"},
                "done": {"say": "Thanks {{name}}, noted: {{ok}}.", "end": True},
            },
            "variables": {"place": "the clinic"},
        }
    )
    a = FlowAgent(flow)
    assert said(await turn(a)) == "Welcome to the clinic. What's your name?"
    assert said(await turn(a, "Maria Lopez")) == "Shall we text you, Maria Lopez?"
    events = await turn(a, "yes")
    assert events[0] == AgentData({"name": "Maria Lopez", "ok": True})
    assert said(events) == "Thanks Maria Lopez, noted: yes."
    assert isinstance(events[-1], AgentEndCall)


async def test_expected_answers_are_recognised_while_the_caller_pauses() -> None:
    a = agent()
    assert not a.expected_answer("tomorrow")  # nothing asked yet
    await turn(a)
    await turn(a, "Can I make an appointment?")  # asks for the day
    assert a.expected_answer("Tomorrow.")
    assert a.expected_answer("on Friday")
    assert not a.expected_answer("I was thinking")
    await turn(a, "Friday")  # asks for the time
    assert a.expected_answer("at three pm") and a.expected_answer("half past two")
    assert not a.expected_answer("erm")
    await turn(a, "at three pm")  # "Shall I book that for you?"
    assert a.expected_answer("Yes.") and a.expected_answer("no")
    assert a.state == "confirm"


async def test_a_spanish_agent_hears_numbers_and_yes_no_in_spanish() -> None:
    flow = validate_flow(
        {
            "start": "party",
            "slots": {"people": {"type": "number", "prompt": "¿Para cuántas personas?"}},
            "states": {
                "party": {"collect": ["people"], "next": "confirm"},
                "confirm": {
                    "say": "Mesa para {{people}}. ¿Correcto?",
                    "intents": [
                        {"name": "si", "answer": "yes", "goto": "done"},
                        {"name": "no", "answer": "no", "goto": "party"},
                    ],
                },
                "done": {"say": "Reservado.", "end": True},
            },
        }
    )
    a = FlowAgent(flow, language="es-MX", today=lambda: SUNDAY)
    assert said(await turn(a)) == "¿Para cuántas personas?"
    events = await turn(a, "Seremos veintidós.")
    assert events[0] == AgentData({"people": 22}) and said(events) == "Mesa para 22. ¿Correcto?"
    assert a.expected_answer("No, espera")  # a step's Spanish answer may end the caller's turn early
    assert said(await turn(a, "No, espera.")) == "¿Para cuántas personas?"
    await turn(a, "treinta y uno")
    events = await turn(a, "Sí, de acuerdo.")
    assert said(events) == "Reservado." and a.finished
    english = FlowAgent(flow, today=lambda: SUNDAY)  # the same flow for an English agent
    await turn(english)
    assert said(await turn(english, "veintidós")) != "Mesa para 22. ¿Correcto?"


async def test_a_predicted_reply_is_what_the_turn_then_says_and_moves_nothing() -> None:
    a, twin = agent(), agent()
    await turn(a)
    await turn(twin)
    lines = ["I would like to book an appointment", "Next Friday", "um", "At three pm", "Yes please."]
    for line in lines:
        predicted = [a.predict_reply(line) for _ in range(3)]  # asking again changes nothing
        assert a.state == twin.state and a.data == twin.data
        events = await turn(a, line)
        assert await turn(twin, line) == events  # as if never asked
        assert predicted == [said(events) or None] * 3
        assert predicted[0]  # every line of this booking gets an answer
    assert a.state == twin.state and a.data["appointment_booked"] is True


async def test_nothing_is_predicted_before_the_greeting_or_after_the_end() -> None:
    a = agent()
    assert a.predict_reply("I would like to book an appointment") is None
    await turn(a)
    await turn(a, "What are your opening hours?")
    await turn(a, "No, that's all.")
    assert a.finished and a.predict_reply("hello?") is None


async def test_a_turn_taken_back_returns_the_flow_to_where_it_stood() -> None:
    a, twin = agent(), agent()
    await turn(a)
    await turn(twin)
    assert said(await turn(a, "Can I make an appointment?")) == "What day would you like to come in?"
    await turn(twin, "Can I make an appointment?")
    events = await turn(a, "Friday")  # the caller goes on: "Friday ... at half past two"
    assert events[0] == AgentData({"day": "2026-11-27"}) and a.data != twin.data
    assert a.take_back()
    assert (a.state, a.data) == (twin.state, twin.data)
    assert not a.take_back()  # once
    # All the words together; the slot filled by the turn taken back is sent again with the answer.
    events = await turn(a, "Friday at half past two")
    assert events == await turn(twin, "Friday at half past two")
    assert events[0] == AgentData({"day": "2026-11-27", "time": "14:30"})


async def test_taken_back_data_is_sent_again_when_the_whole_turn_changes_it_back() -> None:
    a = agent()
    await turn(a)
    await turn(a, "Can I make an appointment?")
    assert (await turn(a, "Friday"))[0] == AgentData({"day": "2026-11-27"})
    assert a.take_back()
    events = await turn(a, "erm")  # the whole turn fills nothing: the call's data must drop "Friday"
    assert events[0] == AgentData({}) and a.data == {}


async def test_the_end_of_the_call_or_the_greeting_cannot_be_taken_back() -> None:
    a = agent()
    assert not a.take_back()
    await turn(a)
    assert not a.take_back()  # the greeting is not a turn
    await turn(a, "What are your opening hours?")
    assert a.take_back()
    await turn(a, "What are your opening hours?")
    events = await turn(a, "No, that's all.")
    assert events[-1] == AgentEndCall()
    assert not a.take_back() and a.finished


async def test_a_reminder_asks_the_steps_question_again_and_the_flow_stays_there() -> None:
    a = agent()
    await turn(a)
    reminded = [event async for event in a.remind("Are you still there?")]
    assert reminded == [
        AgentText(
            "Are you still there? You can say: book an appointment, opening hours, or speak to someone."
        )
    ]
    await turn(a, "I'd like to book an appointment")  # the step asks for the day
    assert a.state == "book"
    reminded = [event async for event in a.remind("Hello?")]
    assert said(reminded) == "Hello? Which day suits you? For example, tomorrow, or Monday."
    events = await turn(a, "tomorrow")  # the caller answers what was asked
    assert events[0] == AgentData({"day": "2026-11-23"})
    assert said(events) == "And what time would suit you?"


async def test_a_reminder_before_the_flow_started_or_after_it_ended_is_the_reminder_alone() -> None:
    a = agent()
    assert [event async for event in a.remind("Hello?")] == [AgentText("Hello?")]
    await turn(a)
    await turn(a, "book an appointment for tomorrow at three pm")
    await turn(a, "Yes, please.")
    await turn(a, "No, that's all.")
    assert a.finished
    assert [event async for event in a.remind("Hello?")] == [AgentText("Hello?")]
