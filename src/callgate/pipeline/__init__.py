"""The conversation pipeline: caller audio -> VAD -> turns -> STT -> agent -> TTS -> paced audio out.

Pure asyncio; no web framework or database. The session builds one :class:`ConversationPipeline` per call
with providers (see :mod:`callgate.pipeline.interfaces`) and a :class:`PipelineOutput` from its transport.
"""

from callgate.pipeline.frames import (
    AgentDataCollected,
    BotInterrupted,
    BotLLMText,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    BotTTSText,
    CallEndRequested,
    Metrics,
    PipelineEvent,
    TransferRequested,
    TurnEnded,
    TurnLatency,
    TurnRecord,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    UserTranscription,
)
from callgate.pipeline.options import Mode, PipelineMetrics, PipelineOptions, PipelineOutput
from callgate.pipeline.pipeline import ConversationPipeline, PipelineState
from callgate.pipeline.recording import Recorder

__all__ = [
    "AgentDataCollected",
    "BotInterrupted",
    "BotLLMText",
    "BotStartedSpeaking",
    "BotStoppedSpeaking",
    "BotTTSText",
    "CallEndRequested",
    "ConversationPipeline",
    "Metrics",
    "Mode",
    "PipelineEvent",
    "PipelineMetrics",
    "PipelineOptions",
    "PipelineOutput",
    "PipelineState",
    "Recorder",
    "TransferRequested",
    "TurnEnded",
    "TurnLatency",
    "TurnRecord",
    "UserStartedSpeaking",
    "UserStoppedSpeaking",
    "UserTranscription",
]
