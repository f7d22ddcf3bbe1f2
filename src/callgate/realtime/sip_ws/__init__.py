"""SIP over WebSocket (RFC 7118) for browser softphones: JsSIP, SIP.js, the Voxworks web SDK.

A web call created with ``transport: "sip"`` hands out per-call digest credentials, a ``target`` and
required ``headers``; a softphone connects to ``/sip``, REGISTERs, and INVITEs the target with a WebRTC
offer. The call then starts like every other call (:func:`callgate.realtime.start.start_call`), its media
carried by :class:`~callgate.realtime.media.PeerMedia`.

Modules, bottom up: :mod:`.guard` (authentication against :mod:`callgate.domain.sip_accounts`),
:mod:`.registrar`, :mod:`.hold` (what a re-offer may change), :mod:`.invite` (the INVITE server
transaction), :mod:`.call` (an answered call), :mod:`.reoffer`, :mod:`.connection` (one socket's user agent
server), :mod:`.socket` and :mod:`.endpoint` (the ``/sip`` route). SIP itself (messages, digest, dialogs)
is in :mod:`callgate.realtime.sip`. See ``docs/sip.md``.
"""
