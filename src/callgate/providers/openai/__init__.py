"""OpenAI-compatible servers: chat completions (OpenAI, Ollama, vLLM, llama.cpp server), transcriptions
and speech (OpenAI, Groq, faster-whisper, Kokoro/Piper servers).

Uses only httpx (a core dependency); no vendor SDK.
"""

from callgate.providers.openai.audio import OpenAISTT, OpenAITTS
from callgate.providers.openai.llm import OpenAILLM

__all__ = ["OpenAILLM", "OpenAISTT", "OpenAITTS"]
