"""SIP itself, shared by the transports that speak it (browser softphones over WebSocket in
:mod:`callgate.realtime.sip_ws`, and carriers over UDP/TCP): :mod:`.message` (strict parsing, the responses
and requests we send), :mod:`.digest` (RFC 8760 digest authentication, server side), :mod:`.dialog` (one
INVITE dialog, UAS side), :mod:`.info_keys` (key presses in SIP INFO). No I/O happens here.
"""
