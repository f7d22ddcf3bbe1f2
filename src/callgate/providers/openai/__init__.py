"""LLMs behind an OpenAI-compatible chat-completions API (OpenAI, Ollama, vLLM, llama.cpp server).

Uses only httpx (a core dependency); no vendor SDK.
"""

from callgate.providers.openai.llm import OpenAILLM

__all__ = ["OpenAILLM"]
