"""The self-test receipt of the update's health gate (``POST /selftest`` on the admin socket, docs/fleet.md §11): a
small PDF taken through the same path as a till's receipt — the PDF check and intake, the durable store, the
display — and then off the screen and out of the store again.

Meant for the first boot of a new system slot (``eticket update commit``), before any customer stands at the
counter: the self-test receipt replaces whatever the screen shows for a moment. It is never published to a
relay.
"""

from __future__ import annotations

import io
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from .errors import ApplianceError
from .intake import TicketMeta
from .service import Appliance
from .store import Pos, sha256_hex

SELFTEST_POS = Pos(id="pos-selftest", name="self-test", paired_at=0.0)
"""The till the self-test receipt comes from: not a pairing (no token can reach it)."""
SELFTEST_META = TicketMeta(total="0.00", currency="EUR", reference="eticket update self-test")


def selftest_pdf() -> bytes:
    """A one-page PDF (A7, 74 × 105 mm) saying it is a self-test, made with pikepdf."""
    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(210, 298))
    page = pdf.pages[0]
    font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                                                BaseFont=pikepdf.Name.Helvetica))
    page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    page.Contents = pdf.make_stream(b"BT /F1 10 Tf 20 250 Td (eTicket self-test receipt) Tj ET")
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


async def async_selftest(appliance: Appliance) -> dict[str, Any]:
    """Run the self-test: ``{"ok": bool, "steps": [{"step", "ok", "detail", "seconds"}]}``, steps in order
    ``intake`` (PDF check, store, display: :meth:`Appliance.async_accept_ticket`), ``store`` (the receipt read
    back by the token of its capability URL, byte for byte), ``display`` (the screen state shows it), ``clear`` (off the
    screen again) and ``delete`` (out of the store). The first failing step ends the run (the later ones are
    not listed); the receipt is taken off the screen and deleted whatever happened."""
    steps: list[dict[str, Any]] = []
    pdf = selftest_pdf()
    ticket_id: str | None = None
    url = ""

    async def step(name: str, action: Any) -> bool:
        started = time.monotonic()
        try:
            detail = await action()
            ok = True
        except (ApplianceError, AssertionError, OSError, ValueError) as exc:
            detail, ok = (exc.detail if isinstance(exc, ApplianceError) else str(exc)) or type(exc).__name__, False
        steps.append({"step": name, "ok": ok, "detail": detail, "seconds": round(time.monotonic() - started, 3)})
        return ok

    async def intake() -> str:
        nonlocal ticket_id, url
        body, _ = await appliance.async_accept_ticket(SELFTEST_POS, pdf, SELFTEST_META, None, publish=False)
        ticket_id, url = str(body["id"]), str(body["url"])
        return f"receipt {ticket_id} accepted ({len(pdf)} bytes)"

    async def store() -> str:
        token = url.rpartition("/r/")[2] if "/r/" in url else url.rpartition("/r#")[2]  # the customer's QR URL
        found = await run_in_threadpool(appliance.store.ticket_by_token, token)
        if found is None or found[1] is None or sha256_hex(found[1]) != sha256_hex(pdf):
            raise AssertionError(f"receipt {ticket_id} read back from the store is not the PDF sent")
        return f"receipt {ticket_id} read back by its token, SHA-256 {sha256_hex(pdf)[:12]}…"

    async def display() -> str:
        state = appliance.display.snapshot()
        if state["scene"] != "ticket" or (state["ticket"] or {}).get("id") != ticket_id:
            raise AssertionError(f"the screen shows {state['scene']!r}, not the self-test receipt")
        return f"the screen shows receipt {ticket_id} (state {state['seq']})"

    async def clear() -> str:
        await appliance.display.async_clear()
        state = appliance.display.snapshot()
        if state["scene"] == "ticket":
            raise AssertionError("the receipt is still on the screen after a clear")
        return f"the screen is back to {state['scene']!r}"

    async def delete() -> str:
        if not await run_in_threadpool(appliance.store.delete_ticket, str(ticket_id)):
            raise AssertionError(f"receipt {ticket_id} was not in the store to delete")
        return f"receipt {ticket_id} deleted"

    try:
        for name, action in (("intake", intake), ("store", store), ("display", display), ("clear", clear),
                             ("delete", delete)):
            if not await step(name, action):
                break
    finally:
        if ticket_id is not None and not any(s["step"] == "delete" and s["ok"] for s in steps):
            if appliance.display.snapshot()["scene"] == "ticket":
                await appliance.display.async_clear()
            try:
                await run_in_threadpool(appliance.store.delete_ticket, ticket_id)
            except ApplianceError:  # the failing step already says what is wrong with the storage
                pass
    return {"ok": all(s["ok"] for s in steps) and len(steps) == 5, "steps": steps}

