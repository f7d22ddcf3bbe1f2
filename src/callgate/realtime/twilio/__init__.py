"""Twilio Programmable Voice: the Voice URL webhook, status callbacks, the REST API (outbound calls,
hang-up, transfer) and the Media Streams WebSocket that carries a call's audio. See ``docs/telephony.md``."""
