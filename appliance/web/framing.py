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

Use it with ``uvicorn.Config(..., http=StrictH11Protocol)``. The answer stays uvicorn's plain-text 400
(docs/protocol.md §4), now followed by the fault: ``Invalid HTTP request received: <fault>.``
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # as uvicorn's own H11Protocol does
from uvicorn.protocols.http.h11_impl import H11Protocol

from .logs import MALFORMED_SCOPE_KEY, redact_path

log = logging.getLogger("eticket.access")

UVICORN_INVALID_REQUEST = "Invalid HTTP request received."
"""uvicorn's own warning for a malformed request (``uvicorn.error``): replaced by our line."""
MAX_FAULT_CHARS = 100
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
    """uvicorn's h11 protocol with :class:`_StrictConnection` and one log line per refused request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = _StrictConnection(h11.SERVER, DEFAULT_MAX_INCOMPLETE_EVENT_SIZE if limit is None else limit)
        if _FILTER not in self.logger.filters:
            self.logger.addFilter(_FILTER)

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with the fault and close (uvicorn calls this on any h11 protocol error)."""
        conn = cast(_StrictConnection, self.conn)
        fault = conn.fault or "malformed request"
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # An endpoint holds this request and will see a disconnect: its access line names the fault.
            scope = cast(dict[str, Any], cycle.scope)
            scope.setdefault("extensions", {})[MALFORMED_SCOPE_KEY] = fault
        else:
            client = self.client[0] if self.client else "-"
            line = conn.request_line if conn.fault == BOTH_LENGTHS else "-"
            log.warning("%s %s 400 refused: %s; connection closed", client, line, fault)
        if conn.our_state is h11.SEND_RESPONSE:
            super().send_400_response(f"{msg.removesuffix('.')}: {fault}.".encode("ascii", "replace").decode())
        else:  # a response is already out (an endpoint answered early): only closing is left
            self.transport.close()
