"""HTTP/1.1 message framing, below the apps: uvicorn's h11 protocol with a stricter request framing and one
log line per refused request.

* A request carrying both ``Content-Length`` and ``Transfer-Encoding`` is refused with ``400`` and the
  connection is closed. RFC 9112 §6.3 (3): such a message "might indicate an attempt to perform request
  smuggling … and ought to be handled as an error"; §6.1: "Regardless, the server MUST close the connection
  after responding to such a request". h11 alone frames it by ``Transfer-Encoding`` and keeps the
  connection open, which is what a smuggled second request behind a proxy needs.
* A malformed request (an illegal chunk header, a bad header line, the above) leaves exactly one log line
  on ``eticket.access`` naming the client, the request when known, and the fault — instead of uvicorn's
  anonymous "Invalid HTTP request received." plus, when an endpoint was reading the body, a 60-line
  traceback. When an endpoint holds the request, :class:`appliance.web.logs.AccessLog` writes that line
  (it finds the fault under ``scope["extensions"][MALFORMED_SCOPE_KEY]``); otherwise this module does.

* An answer sent while the request's body is still arriving (an endpoint that reads no body, ``401``, ``413``,
  a refusal from this layer) ends the connection: no keep-alive, and the rest of the body is not waited for.
  uvicorn keeps such a connection open and discards the body as it trickles in, so a client could hold a
  connection slot with one byte every few seconds. The close is graceful (RFC 9112 §9.6): the device stops
  sending (FIN, or TLS ``close_notify``), reads and discards for at most LINGER_SECONDS, then closes, so the
  client reads the answer instead of a TCP reset.
* When this layer refuses a request an endpoint already holds, the endpoint's own answer is dropped (its
  ``receive()`` sees ``http.disconnect``, its ``send()`` does nothing): one answer, one log line.

Use it with ``uvicorn.Config(..., http=StrictH11Protocol)``. The answer stays uvicorn's plain-text 400
(docs/protocol.md §4), now followed by the fault: ``Invalid HTTP request received: <fault>.``, also when the
request line or head itself is malformed.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from typing import Any, cast

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # as uvicorn's own H11Protocol does
from uvicorn.protocols.http.h11_impl import H11Protocol

from .logs import REFUSED_SCOPE_KEY, redact_path

log = logging.getLogger("eticket.access")

UVICORN_INVALID_REQUEST = "Invalid HTTP request received."
"""uvicorn's own warning for a malformed request (``uvicorn.error``): replaced by our line."""
MAX_FAULT_CHARS = 100
LINGER_SECONDS = 2.0
"""After an answer sent while the request body is still arriving: how long the device keeps reading (and
discarding) before it closes, seconds (nginx's ``lingering_timeout`` is 5 s; a client that reads its answer
closes at once)."""
BOTH_LENGTHS = "both Content-Length and Transfer-Encoding are set (RFC 9112 section 6.1)"

_CLIENT_BYTES = re.compile(r":\s*(?:bytearray\()?b['\"].*", re.DOTALL)
"""h11 quotes the offending bytes (``illegal chunk header: b'zz\\r\\n'``); they may hold a secret: cut."""


def fault_text(exc: h11.RemoteProtocolError) -> str:
    """h11's reason without the client's bytes, printable, at most MAX_FAULT_CHARS characters."""
    text = _CLIENT_BYTES.sub("", str(exc))[:MAX_FAULT_CHARS]
    return "".join(ch if ch.isprintable() else "?" for ch in text) or "malformed request"


class _UvicornInvalidRequestFilter(logging.Filter):
    """Drops uvicorn's anonymous warning, which :class:`StrictH11Protocol` replaces by a line naming the fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == UVICORN_INVALID_REQUEST and not record.args)


_FILTER = _UvicornInvalidRequestFilter()


class _StrictConnection(h11.Connection):
    """An h11 server connection that refuses ambiguous framing and remembers the last fault."""

    fault: str = ""
    request_line: str = ""

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.fault = fault_text(exc)
            raise
        if isinstance(event, h11.Request):
            self.request_line = (f'"{event.method.decode("ascii", "replace")} '
                                 f'{redact_path(event.target.decode("ascii", "replace").split("?")[0])}"')
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                self.fault = BOTH_LENGTHS
                raise h11.RemoteProtocolError(BOTH_LENGTHS, error_status_hint=400)
        return event


class StrictH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with :class:`_StrictConnection`, one log line per refused request, and no
    connection kept after an answer that left the request body unread."""

    _lingering = False
    _linger_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = _StrictConnection(h11.SERVER, DEFAULT_MAX_INCOMPLETE_EVENT_SIZE if limit is None else limit)
        if _FILTER not in self.logger.filters:
            self.logger.addFilter(_FILTER)

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # closing: the rest of an unread body is discarded
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        """After each answer: keep the connection alive as uvicorn does, unless the request's body is still
        arriving; then close without waiting for it."""
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.server_state.total_requests += 1
            self.close_unread()
            return
        super().on_response_complete()

    def close_unread(self) -> None:
        """End the connection after what is already written, with unread request bytes perhaps still coming:
        stop sending (FIN on TCP, ``close_notify`` on TLS), discard what arrives, and close at the latest
        LINGER_SECONDS later (RFC 9112 §9.6: closing at once would send a TCP reset that may destroy the
        answer in the client's buffers)."""
        if self._lingering:
            return
        self._lingering = True
        self._unset_keepalive_if_required()
        self.flow.resume_reading()  # drain, or the kernel resets the connection on close
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def refuse(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, fault: str,
               line: str = "-") -> None:
        """Answer the current request (or the bytes that failed to become one) from this layer with
        ``status``, ``headers`` and ``body``, and close (:meth:`close_unread`).

        An endpoint that holds the request gets ``http.disconnect`` and its answer is dropped; its access line
        (:class:`appliance.web.logs.AccessLog`) names ``status`` and ``fault``. Otherwise this layer writes
        that one line, naming the client and ``line`` (the request, when known). When an answer has already
        started, only closing is left.
        """
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            scope = cast(dict[str, Any], cycle.scope)
            scope.setdefault("extensions", {})[REFUSED_SCOPE_KEY] = (status, fault)
            cycle.disconnected = True  # its send() is a no-op from now on, its receive() says http.disconnect
            cycle.message_event.set()
        else:
            client = self.client[0] if self.client else "-"
            log.warning("%s %s %d refused: %s; connection closed", client, line, status, fault)
        # h11 lets a server answer in IDLE too: a head that failed to parse leaves our state there.
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            reason = http.HTTPStatus(status).phrase.encode()
            for event in (h11.Response(status_code=status, headers=headers, reason=reason), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")
        self.close_unread()

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with the fault and close (uvicorn calls this on any h11 protocol error)."""
        conn = cast(_StrictConnection, self.conn)
        fault = conn.fault or "malformed request"
        text = f"{msg.removesuffix('.')}: {fault}.".encode("ascii", "replace")
        self.refuse(400, [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")], text,
                    fault, conn.request_line if conn.fault == BOTH_LENGTHS else "-")
