"""callgate: a self-hosted web-call server for voice AI agents."""

__version__ = "0.1.0"
