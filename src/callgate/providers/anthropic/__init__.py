"""Claude through Anthropic's Messages API, streamed, with tool use (httpx only; no vendor SDK)."""

from callgate.providers.anthropic.llm import AnthropicLLM

__all__ = ["AnthropicLLM"]
