"""Agent actions: ending the call, transferring it, collecting data."""

from __future__ import annotations

from callgate.pipeline import (
    AgentDataCollected,
    BotInterrupted,
    CallEndRequested,
    TransferRequested,
    TurnEnded,
)
from callgate.pipeline.interfaces import AgentData, AgentEndCall, AgentTransfer
from callgate.providers.fake import PipelineHarness, ScriptedReply

BYE = ScriptedReply("Thank you for calling, goodbye.", after=(AgentEndCall("completed"),))


async def test_end_call_is_requested_after_the_goodbye_has_played() -> None:
    async with PipelineHarness(transcripts=["that's all"], replies=[BYE]) as h:
        await h.speak(500)
        await h.silence(5000)
        (t_end,) = h.output.times_of(CallEndRequested)
        assert h.output.of_type(CallEndRequested)[0].reason == "completed"
        last_frame = h.output.audio[-1][0]
        assert t_end >= last_frame + 0.02 - 1e-9  # the last frame has been heard
        assert len(h.output.audio) == 31 * 50 // 20 + 1  # the whole goodbye
        names = h.output.names()
        assert names.index("TurnEnded", names.index("BotStoppedSpeaking")) < names.index("CallEndRequested")


async def test_the_goodbye_cannot_be_interrupted_and_later_turns_are_ignored() -> None:
    transcripts = ["that's all", "wait, one more thing"]
    async with PipelineHarness(transcripts=transcripts, replies=[BYE, "Sure."]) as h:
        await h.speak(500)
        await h.silence(1000)
        await h.speak(1000)  # talks over the goodbye
        await h.silence(4000)
        assert h.output.of_type(BotInterrupted) == []
        assert len(h.output.of_type(CallEndRequested)) == 1
        assert h.agent.respond_calls == ["that's all"]
        agent_turns = [e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent"]
        assert [(r.text, r.interrupted) for r in agent_turns] == [("Thank you for calling, goodbye.", False)]


async def test_transfer_and_collected_data() -> None:
    reply = ScriptedReply(
        "Let me put you through.",
        before=(AgentData({"reason": "billing"}),),
        after=(AgentTransfer("sip:billing@example.com"),),
    )
    async with PipelineHarness(replies=[reply]) as h:
        h.pipeline.push_text("billing please")
        await h.wait(3000)
        assert [e.data for e in h.output.of_type(AgentDataCollected)] == [{"reason": "billing"}]
        (t_transfer,) = h.output.times_of(TransferRequested)
        assert h.output.of_type(TransferRequested)[0].target == "sip:billing@example.com"
        assert t_transfer >= h.output.audio[-1][0] + 0.02
        assert h.output.times_of(AgentDataCollected)[0] < h.output.audio[0][0]
