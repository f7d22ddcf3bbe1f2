"""kamailio, a real SIP proxy, as a digest-challenging carrier in front of a far end (baresip).

:class:`Kamailio` runs the Debian ``kamailio`` binary in the foreground with its own runtime dir and a
minimal config written from :data:`CONFIG` (loopback only, a free UDP+TCP port): every INVITE outside
a dialog must carry ``Proxy-Authorization`` for ``username``/``password`` (else ``407`` with a digest
challenge, qop=auth; a wrong user is ``403``); it is record-routed and relayed to ``target`` (a
``host:port``; ``routes`` send some Request-URI users elsewhere), its Request-URI's user kept.
In-dialog requests follow their Route (loose routing; with ``refuse_refer`` a REFER is answered 403),
CANCEL and ACK their transaction. Each challenge and each relayed INVITE is logged
(:meth:`Kamailio.count`), so a test can show the challenge happened.

    async with Kamailio(tmp_path, target=("127.0.0.1", phone.sip_port), username="acct",
                        password="pw") as proxy:
        ... carrier outbound host 127.0.0.1, port proxy.port
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.baresip import free_udp_tcp_port
from tests.support.services import ServiceError

__all__ = ["Kamailio"]

REALM = "carrier.test"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
log_prefix=""
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
alias="127.0.0.1:{port}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "auth.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
{refer_policy}        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (!is_method("INVITE")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    if (!pv_proxy_authenticate("{realm}", "{password}", "0")) {{
        xlog("L_NOTICE", "KAMAILIO-CHALLENGE $ci\\n");
        proxy_challenge("{realm}", "1");
        exit;
    }}
    if ($au != "{username}") {{
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    consume_credentials();
    xlog("L_NOTICE", "KAMAILIO-RELAY $ci $rU\\n");
    record_route();
{routes}    $ru = "sip:" + $rU + "@{target_host}:{target_port}";
    t_relay();
}}
"""


class Kamailio:
    """One kamailio process (see the module docstring). Use as an async context manager."""

    def __init__(
        self,
        tmp: Path,
        *,
        target: tuple[str, int],
        username: str,
        password: str,
        routes: dict[str, tuple[str, int]] | None = None,
        refuse_refer: bool = False,
    ) -> None:
        self.dir = tmp / "kamailio"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.routes = routes or {}
        """Request-URI users relayed elsewhere than ``target``."""
        self.refuse_refer = refuse_refer
        """Answer an in-dialog REFER 403, as carriers that do not allow transfers do."""
        self.username = username
        self.password = password
        self.port = 0
        self.log = self.dir / "kamailio.log"
        self._process: subprocess.Popen[bytes] | None = None

    def count(self, marker: str) -> int:
        """How many times ``marker`` (``KAMAILIO-CHALLENGE``, ``KAMAILIO-RELAY``) was logged."""
        try:
            return self.log.read_text(errors="replace").count(marker)
        except OSError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def start(self) -> Self:
        binary = shutil.which("kamailio")
        if binary is None:
            raise ServiceError("kamailio not found; install it with `apt-get install kamailio`")
        for attempt in range(3):
            self.port = free_udp_tcp_port()
            config = self.dir / "kamailio.cfg"
            config.write_text(
                CONFIG.format(
                    port=self.port,
                    realm=REALM,
                    username=self.username,
                    password=self.password,
                    target_host=self.target[0],
                    target_port=self.target[1],
                    refer_policy=(
                        '        if (is_method("REFER")) {\n'
                        '            xlog("L_NOTICE", "KAMAILIO-REFUSED-REFER $ci '
                        'Refer-To: $hdr(Refer-To) Referred-By: $hdr(Referred-By)\\n");\n'
                        '            sl_send_reply("403", "Transfers Not Allowed");\n'
                        "            exit;\n"
                        "        }\n"
                        if self.refuse_refer
                        else ""
                    ),
                    routes="".join(
                        f'    if ($rU == "{user}") {{\n'
                        f'        $ru = "sip:" + $rU + "@{host}:{port}";\n'
                        "        t_relay();\n"
                        "        exit;\n"
                        "    }\n"
                        for user, (host, port) in self.routes.items()
                    ),
                )
            )
            runtime = self.dir / "run"
            runtime.mkdir(exist_ok=True)
            with self.log.open("ab") as log:  # the child keeps its own descriptor
                self._process = subprocess.Popen(
                    # Foreground (-DD), logging to stderr (-E), small memory, its own runtime dir.
                    [binary, "-DD", "-E", "-f", str(config), "-Y", str(runtime), "-m", "32", "-M", "4"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                )
            try:
                await self._ready()
                return self
            except ServiceError:
                await asyncio.to_thread(self._kill)
                if attempt == 2:
                    raise
        return self

    async def _ready(self) -> None:
        """Wait until it answers an OPTIONS over UDP (with 405: it only relays INVITEs)."""
        loop = asyncio.get_running_loop()
        answered = loop.create_future()

        class Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if data.startswith(b"SIP/2.0") and not answered.done():
                    answered.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
        try:
            local = transport.get_extra_info("sockname")[1]
            probe = (
                f"OPTIONS sip:probe@127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKprobe{local}\r\n"
                "Max-Forwards: 5\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
                f"Call-ID: probe-{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            for _ in range(100):
                if self._process is not None and self._process.poll() is not None:
                    raise ServiceError(f"kamailio exited: {self.log_tail()}")
                transport.sendto(probe, ("127.0.0.1", self.port))
                try:
                    await asyncio.wait_for(asyncio.shield(answered), 0.1)
                    return
                except TimeoutError:
                    continue
            raise ServiceError(f"kamailio did not answer: {self.log_tail()}")
        finally:
            transport.close()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    async def stop(self) -> None:
        await asyncio.to_thread(self._kill)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
