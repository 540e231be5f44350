"""An access log that never writes a capability token."""

from __future__ import annotations

import logging
import re
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("eticket.access")

REFUSED_SCOPE_KEY = "eticket.refused"
"""Key in ``scope["extensions"]`` under which :mod:`appliance.web.framing` records ``(status, fault)`` of a
request the HTTP layer answered itself while an endpoint held it (a malformed body: 400; a body too slow:
408)."""

_LONG_SEGMENT = re.compile(r"[^/]{16,}")
"""Any path segment of 16 characters or more may be a secret (capability tokens are 43): never logged."""


def redact_path(path: str) -> str:
    """Replace every path segment of 16+ characters by ``<redacted>``, wherever it sits (``/r/T``, ``//r/T``,
    ``/r/./T``, ``/r%2FT``), cut the path at 200 characters and escape non-printable characters as ``\\xNN``.
    Query strings are never logged."""
    redacted = _LONG_SEGMENT.sub("<redacted>", path)[:200]
    # Percent-decoded paths may hold newlines or terminal escapes: never let a client forge log lines.
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in redacted)


class AccessLog:
    """ASGI middleware: one line per request: client, method, redacted path, status, milliseconds.

    A request whose body never completes — the client went away mid-body, or the HTTP layer refused it (a
    malformed or too slow body: :mod:`appliance.web.framing` records the status and fault in the scope) —
    ends here as that one line, with the reason appended, instead of an ERROR traceback: there is no one
    left to answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        outcome = ""

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            outcome = " client disconnected before sending the whole body"
        finally:
            refused = (scope.get("extensions") or {}).get(REFUSED_SCOPE_KEY)
            if refused:
                status, outcome = refused[0], f" refused: {refused[1]}; connection closed"
            client = scope.get("client") or ("-", 0)
            log.log(
                logging.WARNING if refused else logging.INFO,
                '%s "%s %s" %s %.1fms%s', client[0], scope["method"], redact_path(scope["path"]), status or "-",
                (time.perf_counter() - start) * 1000, outcome,
            )
