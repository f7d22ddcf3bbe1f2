"""End-to-end tests reuse the real server fixtures of the real-time tests."""

from tests.realtime.conftest import live, live_settings

__all__ = ["live", "live_settings"]
