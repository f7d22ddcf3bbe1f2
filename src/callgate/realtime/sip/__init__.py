"""SIP over WebSocket (RFC 7118) for browser softphones: JsSIP, SIP.js, the Voxworks web SDK.

A web call created with ``transport: "sip"`` hands out per-call digest credentials, a ``target`` and
required ``headers``; a softphone connects to ``/sip``, REGISTERs, and INVITEs the target with a WebRTC
offer. The call then runs in the same :class:`~callgate.realtime.session.CallSession` as every other
transport, with its media carried by :class:`~callgate.realtime.media.PeerMedia`.

Layers, bottom up: :mod:`.message` (parse/serialise), :mod:`.digest` (RFC 8760), :mod:`.directory`
(credentials → call), :mod:`.guard` (authentication), :mod:`.registrar`, :mod:`.dialog`, :mod:`.sdp`
(hold), :mod:`.dtmf`, :mod:`.invite` (the INVITE server transaction), :mod:`.call` (an answered call),
:mod:`.reoffer` (re-INVITE, UPDATE, INFO), :mod:`.uas` (one connection). ``docs/sip.md`` is the guide.
"""

from callgate.realtime.sip.uas import SipConnection

__all__ = ["SipConnection"]
