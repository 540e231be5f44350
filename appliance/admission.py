"""Connection admission in front of uvicorn's HTTP/1.1 protocol (h11): who may hold a connection, and for how
long a connection may take to say what it wants.

uvicorn bounds neither: a connection that sends half a request head (slowloris), or nothing, or never
finishes its TLS handshake is held for ever, and a screen whose tablet left the Wi-Fi is held until the
kernel gives up retransmitting (about 15 minutes). Before this layer 255 such connections made every request
on that listener a 503. Here, per listener:

* **Head deadline**: the TLS handshake and the request line and headers must arrive within
  HEAD_TIMEOUT_SECONDS of the connection being accepted (and, on a kept-alive connection, of the first
  byte of the next request); otherwise the connection is closed. h11 bounds the head's size (16 KiB),
  uvicorn the idle time between requests (``timeout_keep_alive``).
* **Body deadline**: a client that is not trusted (below) must send a request's body within
  UNTRUSTED_BODY_SECONDS of its head, or gets ``408 request-timeout`` and the connection is closed;
  trusted clients (the till's receipts: 10 MiB over a weak Wi-Fi) get the API's ``BODY_TIMEOUT_SECONDS``
  (:mod:`appliance.web.api`). An answer that leaves a body unread closes the connection
  (:mod:`appliance.web.framing`): a trickled body cannot hold a slot behind a quick answer either.
* **Caps**: at most MAX_CONNECTIONS_PER_ADDRESS from one client address and MAX_CONNECTIONS in all, of
  which RESERVED_CONNECTIONS only for trusted clients: the device itself (127.0.0.1, ::1: the kiosk) and
  addresses that presented a valid POS or screen token in the last TRUSTED_ADDRESS_SECONDS (the paired
  till, paired tablets). So one noisy phone or attacker cannot shut out the others, and even many cannot
  shut out the till or the screens. A refused connection gets a 503 problem (plain HTTP) or is closed
  (before a TLS handshake) at once.
* **Dead peers**: TCP keepalive and ``TCP_USER_TIMEOUT`` on every accepted socket drop a peer that stopped
  answering within about DEAD_PEER_SECONDS, whether the connection is idle (keepalive probes) or
  streaming (the display stream's heartbeat is unacknowledged data).

The numbers, measured, are in docs/protocol.md ("Limits") and docs/security.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, cast

import h11

from .errors import RequestTimeout, TooManyConnections
from .web.framing import StrictH11Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT_SECONDS = 10.0
"""Time for the TLS handshake plus the request line and headers (a phone on a weak Wi-Fi needs well under
a second; nginx's ``client_header_timeout`` default is 60 s, shorter here because a device has few slots)."""
UNTRUSTED_BODY_SECONDS = 10.0
"""Time for a request body, from the end of its head, for a client that is not trusted (no valid POS or
screen token from its address): what such clients send are pairing requests of at most 4 KiB, well under a
second on a weak Wi-Fi. Checked when it runs out, so a till whose token was just accepted is not cut."""
MAX_CONNECTIONS = 256
"""Connections per listener, all clients together (descriptors: two listeners stay far below 1024)."""
RESERVED_CONNECTIONS = 32
"""Of MAX_CONNECTIONS, kept for trusted clients (the kiosk, the paired till, paired screens)."""
MAX_CONNECTIONS_PER_ADDRESS = 16
"""Connections from one client address (a browser opens up to 6 per host); the device itself is exempt."""
TRUSTED_ADDRESS_SECONDS = 24 * 3600.0
"""How long an address that presented a valid POS or screen token keeps the reserve (refreshed on use)."""
MAX_TRUSTED_ADDRESSES = 64
"""Addresses remembered as trusted; the least recently seen is forgotten first."""
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1"})
"""The device itself: the kiosk connects from here. Other loopback addresses are ordinary clients."""
KEEPALIVE_IDLE_SECONDS = 10
"""TCP keepalive (RFC 1122 §4.2.3.6): first probe after this much silence, seconds."""
KEEPALIVE_INTERVAL_SECONDS = 5
"""Between keepalive probes, seconds."""
KEEPALIVE_PROBES = 3
"""Unanswered probes before the kernel drops the connection."""
USER_TIMEOUT_SECONDS = 20
"""``TCP_USER_TIMEOUT`` (RFC 5482): sent data unacknowledged this long drops the connection, seconds."""
DEAD_PEER_SECONDS = KEEPALIVE_IDLE_SECONDS + USER_TIMEOUT_SECONDS
"""Worst case until a silent peer is dropped: an idle one after the probes, a streaming one once the next
heartbeat (every 10 s) stays unacknowledged for USER_TIMEOUT_SECONDS."""
REFUSAL_LOG_SECONDS = 60.0
"""At most one warning per listener in this time about refused connections (a flood must not flood the
journal); the warning counts them."""
RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of the 503 sent to a refused plain-HTTP connection."""


def client_host(peername: Any) -> str:
    """The client address of ``peername`` as the caps count it: IPv4-mapped IPv6 as IPv4; '' for a Unix
    socket."""
    if not isinstance(peername, tuple) or not peername:
        return ""
    host = str(peername[0]).split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class Admission:
    """The trust shared by every listener of one appliance, and a protocol class per listener.

    ``clock`` is monotonic seconds (a parameter for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._trusted: OrderedDict[str, float] = OrderedDict()

    def trust(self, host: str | None) -> None:
        """``host`` presented a valid POS or screen token: give it the reserve for TRUSTED_ADDRESS_SECONDS."""
        if not host:
            return
        host = client_host((host,))
        self._trusted[host] = self._clock() + TRUSTED_ADDRESS_SECONDS
        self._trusted.move_to_end(host)
        while len(self._trusted) > MAX_TRUSTED_ADDRESSES:
            self._trusted.popitem(last=False)

    def trusted(self, host: str) -> bool:
        """True for the device itself and for addresses trusted less than TRUSTED_ADDRESS_SECONDS ago."""
        if host in LOCAL_ADDRESSES or not host:
            return True
        until = self._trusted.get(host)
        if until is None:
            return False
        if until < self._clock():
            del self._trusted[host]
            return False
        return True

    def protocol_class(self, name: str, tls: ssl.SSLContext | None = None) -> type[asyncio.Protocol]:
        """A uvicorn protocol class (``uvicorn.Config(http=...)``) for one listener called ``name`` (for the
        log). With ``tls`` the protocol does the TLS handshake itself, after admission and within the head
        deadline: give uvicorn no ``ssl_*`` settings for that listener."""
        listener = _Listener(self, name)
        return type("AdmittedH11Protocol", (_AdmittedH11Protocol,), {"listener": listener, "tls": tls})


class _Listener:
    """One listener's counts."""

    def __init__(self, admission: Admission, name: str) -> None:
        self.admission = admission
        self.name = name
        self.total = 0
        self.per_address: Counter[str] = Counter()
        self._refused = 0
        self._last_warning = float("-inf")

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host`` in, or say why not (None: admitted)."""
        local = host in LOCAL_ADDRESSES or not host
        if not local and self.per_address[host] >= MAX_CONNECTIONS_PER_ADDRESS:
            return f"{MAX_CONNECTIONS_PER_ADDRESS} connections from {host} already"
        limit = MAX_CONNECTIONS if self.admission.trusted(host) else MAX_CONNECTIONS - RESERVED_CONNECTIONS
        if self.total >= limit:
            return f"{self.total} connections open (limit {limit} for {host})"
        self.total += 1
        self.per_address[host] += 1
        return None

    def release(self, host: str) -> None:
        self.total -= 1
        self.per_address[host] -= 1
        if self.per_address[host] <= 0:
            del self.per_address[host]

    def refused(self, why: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._last_warning >= REFUSAL_LOG_SECONDS:
            log.warning("%s: refused %d connection(s) in the last %.0f s, latest: %s", self.name, self._refused,
                        REFUSAL_LOG_SECONDS, why)
            self._refused = 0
            self._last_warning = now


def _set_dead_peer_options(transport: asyncio.BaseTransport) -> None:
    """TCP keepalive and TCP_USER_TIMEOUT on the accepted socket (Linux; ignored where unsupported)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
                        ("TCP_KEEPCNT", KEEPALIVE_PROBES), ("TCP_USER_TIMEOUT", USER_TIMEOUT_SECONDS * 1000)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError:  # the peer is already gone
            return


def _refusal_bytes() -> bytes:
    """The whole 503 answer to a connection refused before its request (RFC 9110 §15.6.4, RFC 9457)."""
    problem = TooManyConnections("The device has too many open connections right now; try again in a few "
                                 "seconds.").problem()
    body = json.dumps(problem).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (RETRY_AFTER_SECONDS, len(body), body))


_REFUSAL = _refusal_bytes()
_SLOW_BODY = json.dumps(RequestTimeout(f"The body did not arrive within {UNTRUSTED_BODY_SECONDS:.0f} s of the "
                                       "request head.").problem()).encode()
"""The body of the 408 sent when UNTRUSTED_BODY_SECONDS run out (RFC 9110 §15.5.9, RFC 9457)."""
_SLOW_HEADERS = [(b"content-type", b"application/problem+json"), (b"connection", b"close"),
                 (b"content-length", b"%d" % len(_SLOW_BODY))]


class _AdmittedH11Protocol(StrictH11Protocol):
    """uvicorn's h11 protocol (strict framing, :mod:`appliance.web.framing`) behind admission, the head
    deadline and (optionally) its own TLS handshake."""

    listener: ClassVar[_Listener]
    tls: ClassVar[ssl.SSLContext | None]

    _host = ""
    _counted = False
    _started = False
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _raw: asyncio.BaseTransport | None = None
    _early: bytes = b""
    _handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._host = client_host(transport.get_extra_info("peername"))
        why = self.listener.admit(self._host)
        if why is not None:
            self.listener.refused(why)
            if self.tls is None:
                transport.write(_REFUSAL)  # type: ignore[attr-defined]
                transport.close()
            else:
                transport.abort()  # type: ignore[attr-defined]
            return
        self._counted = True
        self._raw = transport
        if self.tls is not None:
            transport.pause_reading()  # type: ignore[attr-defined]  # start_tls takes the bytes from here
        _set_dead_peer_options(transport)
        self._arm_head_timer()
        if self.tls is None:
            self._start(transport)
        else:
            self._handshake = self.loop.create_task(self._async_handshake(transport))  # referenced: not collected

    async def _async_handshake(self, transport: asyncio.BaseTransport) -> None:
        assert self.tls is not None
        try:
            secure = await self.loop.start_tls(transport, self, self.tls, server_side=True,  # type: ignore[arg-type]
                                               ssl_handshake_timeout=HEAD_TIMEOUT_SECONDS)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.debug("%s: TLS handshake with %s failed: %s", self.listener.name, self._host, exc)
            transport.abort()  # type: ignore[attr-defined]
            self._release()
            return
        if secure is None or secure.is_closing() or not self._counted:
            self._release()
            return
        self._start(secure)

    def _start(self, transport: asyncio.BaseTransport) -> None:
        self._started = True
        super().connection_made(transport)  # type: ignore[arg-type]
        if self._early:  # the request that came with the end of the TLS handshake, before start_tls returned
            early, self._early = self._early, b""
            self.data_received(early)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        log.debug("%s: no request head from %s within %.0f s: closed", self.listener.name, self._host,
                  HEAD_TIMEOUT_SECONDS)
        (self.transport if self._started else self._raw).abort()  # type: ignore[union-attr]
        if not self._started:
            self._release()

    def data_received(self, data: bytes) -> None:
        if not self._started:
            self._early += data  # decrypted in the loop turn that finished the handshake
            return
        super().data_received(data)
        # h11 leaves IDLE once a whole request head has been parsed; back in IDLE (a kept-alive connection)
        # with bytes of the next request arriving, that head gets its own deadline.
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()
        else:
            self._disarm_head_timer()
        self._track_body()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_body()  # a pipelined request's head may have been parsed just now

    def _track_body(self) -> None:
        """A body deadline while a request's body is arriving (and no answer has ended the connection)."""
        if self.conn.their_state is h11.SEND_BODY and not self._lingering:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(UNTRUSTED_BODY_SECONDS, self._body_timeout)
        else:
            self._disarm_body_timer()

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self._lingering or self.transport.is_closing():
            return
        if self.listener.admission.trusted(self._host):
            return  # the till or a screen: the API's BODY_TIMEOUT_SECONDS applies
        self.refuse(408, _SLOW_HEADERS, _SLOW_BODY, f"the body did not arrive within {UNTRUSTED_BODY_SECONDS:.0f} s",
                    cast(Any, self.conn).request_line)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        if self._started:
            super().connection_lost(exc)
        self._release()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self.listener.release(self._host)
