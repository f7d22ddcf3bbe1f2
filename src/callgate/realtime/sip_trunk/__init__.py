"""SIP trunks: SIP over UDP and TCP from carriers and PBXs (RFC 3261); media in ``media/rtp_session``."""
