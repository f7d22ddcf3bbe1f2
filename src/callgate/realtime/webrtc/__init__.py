"""The WebRTC transport: SDP offer/answer over HTTP with the call token, Opus audio, RTVI on a data channel.
See ``docs/webrtc.md``."""
