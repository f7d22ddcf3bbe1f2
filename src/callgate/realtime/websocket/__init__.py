"""The WebSocket transport: RTVI JSON text frames plus PCM16 binary frames (the native SDK, pipecat clients,
the VoiceHub, Verbex and OneInbox dialects). See ``docs/realtime-protocol.md``."""
