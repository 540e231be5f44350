"""The device as a till's printer, over real sockets to a real ``eticket serve``: raw port 9100 jobs and the
TakePOS connector become receipts on the screen; only allowed tills print; bad jobs end alone.

Tills print from 127.0.0.1; "another machine on the LAN" is 127.0.0.2 (the whole 127/8 is loopback), a
source address the device sees as different."""

from __future__ import annotations

import base64
import re
import socket
import time

import httpx
import pypdfium2 as pdfium
import pytest

from tests.conftest import SAMPLES, Appliance, free_port, wait_for

TAKEPOS = SAMPLES / "takepos"
ESCPOS = SAMPLES / "escpos"


def send_job(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 20.0) -> bytes:
    """Send one job as a network print connector does (connect, write, close its side); the bytes the
    device answered (status replies) until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        replies = b""
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(4096):
                replies += chunk
        except (ConnectionResetError, BrokenPipeError, OSError):  # a refused till: the device closed at once
            pass
        return replies


def pdf_text(pdf: bytes) -> str:
    doc = pdfium.PdfDocument(pdf)
    return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))


def printer_appliance(factory: object, *extra: str) -> tuple[Appliance, int]:
    port = free_port()
    app: Appliance = factory("--printer-listen", f"127.0.0.1:{port}", *extra)  # type: ignore[operator]
    return app, port


def wait_ticket(app: Appliance, after_rows: int = 0, timeout: float = 20.0) -> dict[str, object]:
    """The ticket on screen once a new one is stored; its downloaded PDF in ``["pdf"]``."""
    wait_for(lambda: app.ticket_rows() > after_rows, timeout, "the print job stored as a ticket")
    wait_for(lambda: app.display()["scene"] == "ticket", 5, "the receipt QR on screen")
    ticket = dict(app.display()["ticket"])  # type: ignore[arg-type]
    ticket["pdf"] = httpx.get(str(ticket["url"])).content
    return ticket


def allow(app: Appliance, address: str) -> dict[str, object]:
    r = app.admin("POST", f"/printers?address={address}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_job_from_an_unknown_till_is_refused_until_it_is_allowed_and_again_once_revoked(
        appliance_factory: object) -> None:
    app, port = printer_appliance(appliance_factory)
    app.pair()  # a POS paired: pairing is closed, so no till is bound by printing
    job = (TAKEPOS / "bakery.bin").read_bytes()
    send_job(port, job)
    wait_for(lambda: "refused: no till allowed there" in app.logs(), 10, "the refusal logged")
    assert app.ticket_rows() == 0 and app.display()["scene"] == "idle"

    till = allow(app, "127.0.0.1")
    assert (till["network"], till["how"], till["created"]) == ("127.0.0.1/32", "allowed", True)
    send_job(port, job)
    ticket = wait_ticket(app)
    text = pdf_text(ticket["pdf"])  # type: ignore[arg-type]
    assert "Boulangerie Dupré" in text and "Total TTC" in text and "6,50" in text
    assert (ticket["total"], ticket["currency"]) == ("6.50", "EUR")

    send_job(port, job, source="127.0.0.2")  # another machine of the LAN: not allowed
    wait_for(lambda: "from 127.0.0.2 refused" in app.logs(), 10, "the other address refused")
    assert app.ticket_rows() == 1

    assert app.admin("DELETE", f"/printers/{till['id']}").status_code == 204
    send_job(port, job)  # refused again (logged once a minute per address: a scan must not flood the journal)
    assert httpx.get(app.url + "/display/index.php", params={"text": "x"}).status_code == 403
    time.sleep(1)
    assert app.ticket_rows() == 1 and app.logs().count("from 127.0.0.1 refused") == 1
    assert app.admin("DELETE", f"/printers/{till['id']}").status_code == 404


def test_revoking_the_last_till_does_not_let_its_next_job_bind_it_again(appliance_factory: object) -> None:
    """A fresh device (pairing open until the first pairing) with a till allowed by hand: the open window
    closes, as a pairing closes it; revoking that till, the only one, does not reopen pairing, so the
    revoked till's next job is refused instead of binding it again (binding needs no code)."""
    app, port = printer_appliance(appliance_factory)
    assert app.display()["scene"] == "pairing"
    till = allow(app, "127.0.0.1")
    assert app.display()["scene"] == "idle"
    assert app.admin("DELETE", f"/printers/{till['id']}").status_code == 204
    send_job(port, (TAKEPOS / "bakery.bin").read_bytes())
    wait_for(lambda: "from 127.0.0.1 refused" in app.logs(), 10, "the revoked till refused")
    time.sleep(0.5)
    assert app.ticket_rows() == 0 and app.display()["scene"] == "idle"
    assert httpx.get(app.url + "/healthz").json()["paired"] is False


def test_while_pairing_is_open_the_first_job_binds_its_till_and_the_screen_says_so(
        appliance_factory: object) -> None:
    app, port = printer_appliance(appliance_factory, "--display-timeout", "3")
    assert app.display()["scene"] == "pairing"
    send_job(port, (TAKEPOS / "bakery.bin").read_bytes())
    wait_ticket(app)
    state = app.display()
    assert state["scene"] != "ticket" or state["till_bound"] is None  # never over the test receipt's QR
    wait_for(lambda: app.display()["scene"] == "idle", 10, "the screen at rest after the test receipt")
    assert app.display()["till_bound"] == {"address": "127.0.0.1"}  # the shop owner reads it there
    tills = app.admin("GET", "/printers").json()
    assert [(t["network"], t["how"]) for t in tills] == [("127.0.0.1/32", "bound")]
    # pairing closed with the binding: another address is not bound by printing now
    send_job(port, (TAKEPOS / "bakery.bin").read_bytes(), source="127.0.0.2")
    wait_for(lambda: "from 127.0.0.2 refused" in app.logs(), 10, "the second address refused")
    # the device counts as set up: a restart does not reopen pairing
    app.stop()
    app.start()
    assert app.display()["scene"] == "idle"
    assert httpx.get(app.url + "/healthz").json()["paired"] is True


def test_status_queries_are_answered_as_a_healthy_printer_does(appliance_factory: object) -> None:
    app, port = printer_appliance(appliance_factory)
    allow(app, "127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for query in (b"\x10\x04\x01", b"\x10\x04\x02", b"\x10\x04\x03", b"\x10\x04\x04", b"\x1dr\x01"):
            sock.sendall(query)
            reply = sock.recv(16)
            assert len(reply) == 1, (query, reply)
            if query == b"\x10\x04\x01":  # printer status: online (bit 3 clear); bit 2 is the drawer pin
                assert reply[0] & ~0x04 == 0x12, (query, reply)
            elif query.startswith(b"\x10\x04"):  # offline causes, errors, paper sensors: none (Epson: 0x12)
                assert reply == b"\x12", (query, reply)
            else:
                assert reply == b"\x00", (query, reply)  # paper present
    assert app.ticket_rows() == 0  # status queries alone print nothing


def test_the_takepos_connector_prints_and_drives_the_display_from_another_origin(
        appliance_factory: object) -> None:
    app, _ = printer_appliance(appliance_factory)
    allow(app, "127.0.0.1")
    origin = {"Origin": "http://dolibarr.example.invalid"}
    preflight = httpx.options(app.url + "/printer/index.php", headers={
        **origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Private-Network": "true"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-private-network"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]

    shown = httpx.get(app.url + "/display/index.php", params={"text": "Croissant".ljust(20) + "1,20".rjust(20)},
                      headers=origin)
    assert shown.status_code == 200 and shown.headers["access-control-allow-origin"] == "*"
    state = app.display()
    assert state["scene"] == "sale" and state["sale"] == {"lines": ["Croissant", "                1,20"]}
    httpx.get(app.url + "/display/index.php", params={"text": "Total TTC".ljust(20) + "7,10".rjust(20)})

    job = (TAKEPOS / "cafe-logo.bin").read_bytes()
    # older TakePOS: plain base64 whose '+' the form decoding turned into a space
    plain = base64.b64encode(job).decode()
    assert "+" in plain
    r = httpx.post(app.url + "/printer/index.php?printer=1", content="invoice=" + plain.replace("+", " "),
                   headers={**origin, "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    ticket = wait_ticket(app)
    assert ticket["total"] == "7.10"  # the display's payment line, not the receipt's
    assert "Chocolat chaud à l'ancienne – grand" in pdf_text(ticket["pdf"])  # type: ignore[arg-type]

    urlsafe = base64.urlsafe_b64encode((TAKEPOS / "bakery.bin").read_bytes()).decode().rstrip("=")
    r = httpx.post(app.url + "/printer/index.php", data={"invoice": urlsafe})
    assert r.status_code == 200 and r.json()["total"] == "6.50"


@pytest.mark.parametrize("body, status, slug", [
    ("invoice=", 422, "print-job-refused"),
    ("invoice=%%%not-base64", 422, "print-job-refused"),
    ("other=QUJD", 400, "bad-request"),
    ("invoice=" + base64.urlsafe_b64encode(b"\x1b@\x1bd\x03\x1dV\x00").decode(), 422, "print-job-refused"),
    ("invoice=" + "%41" * 20_000, 422, "print-job-refused"),  # percent-decoding megabytes cost gigabytes
    ("invoice=" + base64.urlsafe_b64encode(  # 40 QR codes of 2,000 bytes: over the codes' 64 KiB of data
        b"\x1b@" + (b"\x1d(k\xd3\x071P0" + b"x" * 2000 + b"\x1d(k\x03\x001Q0") * 40 + b"\x1dV\x00").decode(),
     422, "print-job-refused"),
])
def test_connector_refusals_are_named_and_nothing_is_stored(appliance_factory: object, body: str, status: int,
                                                            slug: str) -> None:
    app, _ = printer_appliance(appliance_factory)
    allow(app, "127.0.0.1")
    r = httpx.post(app.url + "/printer/index.php", content=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == status, r.text
    assert r.json()["type"].endswith("/" + slug) and r.json()["detail"]
    assert r.headers["access-control-allow-origin"] == "*"
    assert app.ticket_rows() == 0


def test_a_till_not_allowed_gets_403_from_the_connector(appliance_factory: object) -> None:
    app, _ = printer_appliance(appliance_factory)
    app.pair()
    r = httpx.get(app.url + "/display/index.php", params={"text": "x"})
    assert r.status_code == 403 and r.json()["type"].endswith("/till-not-allowed")
    assert "eticket printers allow 127.0.0.1" in r.json()["detail"]


def test_bad_jobs_end_alone_and_the_port_keeps_serving(appliance_factory: object) -> None:
    app, port = printer_appliance(appliance_factory)
    allow(app, "127.0.0.1")
    job = (TAKEPOS / "bakery.bin").read_bytes()
    send_job(port, job[: len(job) // 3])  # truncated: what prints is a receipt without its end, or nothing
    send_job(port, bytes(range(256)) * 64)  # garbage
    send_job(port, b"\x1dv0\x00\xff\xff\xff\xff")  # a 65535-byte-wide, 65535-row raster header, no data
    # many connections at once: the ones over the cap are closed at once, none hangs the port
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(12)]
    for sock in socks:
        sock.close()
    rows = app.ticket_rows()
    send_job(port, job)
    ticket = wait_ticket(app, after_rows=rows)
    assert "Boulangerie Dupré" in pdf_text(ticket["pdf"])  # type: ignore[arg-type]
    assert httpx.get(app.url + "/healthz").json()["status"] == "ok"
    assert not re.search(r"Traceback", app.logs())


def test_a_job_cut_by_a_restart_leaves_nothing_half_stored(appliance_factory: object) -> None:
    """The device stops (SIGTERM, then a kill -9 on the next try) while a till is still sending: nothing of
    that job is stored or shown; once back, the till's next job is a receipt as usual."""
    app, port = printer_appliance(appliance_factory)
    allow(app, "127.0.0.1")
    job = (TAKEPOS / "cafe-logo.bin").read_bytes()
    for stop in (app.stop, app.kill9):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(job[: len(job) // 2])
        stop()
        sock.close()
        assert app.ticket_rows() == 0
        app.start()
        assert app.display()["scene"] == "idle"
    send_job(port, job)
    ticket = wait_ticket(app)
    assert "Chocolat chaud à l'ancienne – grand" in pdf_text(ticket["pdf"])  # type: ignore[arg-type]
    assert app.ticket_rows() == 1


def test_a_scan_or_a_malformed_post_while_pairing_is_open_binds_nothing(appliance_factory: object) -> None:
    """Only a job that makes a receipt binds its address: a printer-discovery probe (connect, close), an
    empty connector post or one that is not base64 leave pairing open for the shop's real test receipt."""
    app, port = printer_appliance(appliance_factory)
    send_job(port, b"", source="127.0.0.2")
    for body in ("foo=bar", "invoice=!!!"):
        r = httpx.post(app.url + "/printer/index.php", content=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code in (400, 422)
    send_job(port, b"\x1b@\x1dV\x00", source="127.0.0.2")  # prints nothing
    time.sleep(0.5)
    assert app.admin("GET", "/printers").json() == [] and app.display()["scene"] == "pairing"
    send_job(port, (TAKEPOS / "bakery.bin").read_bytes())
    wait_ticket(app)
    assert [t["network"] for t in app.admin("GET", "/printers").json()] == ["127.0.0.1/32"]


def test_a_display_total_is_the_next_receipt_total_of_that_till_only(appliance_factory: object) -> None:
    app, port = printer_appliance(appliance_factory)
    allow(app, "127.0.0.0/24")
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        shown = other.get(app.url + "/display/index.php", params={"text": "Total TTC".ljust(20) + "1,00".rjust(20)})
    assert shown.status_code == 200
    send_job(port, (TAKEPOS / "bakery.bin").read_bytes())  # another till: its own receipt's total
    assert wait_ticket(app)["total"] == "6.50"


def test_a_job_that_would_take_the_converter_all_its_time_is_refused_at_once(appliance_factory: object) -> None:
    """20,000 prints of one stored QR (within the interpreter's limits) took the single worker its whole
    30 s, holding up every till; now refused by what it would cost to draw, and the next receipt is quick."""
    app, port = printer_appliance(appliance_factory)
    allow(app, "127.0.0.1")
    store = b"\x1d(k\xd3\x071P0" + b"x" * 2000
    send_job(port, b"\x1b@" + store + b"\x1d(k\x03\x001Q0" * 20_000 + b"\x1dV\x00")
    wait_for(lambda: "too long to draw" in app.logs(), 10, "the costly job refused")
    started = time.monotonic()
    send_job(port, (TAKEPOS / "bakery.bin").read_bytes())
    wait_ticket(app)
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_a_slow_sender_and_a_till_that_never_reads_its_replies_end_at_the_deadline(
        appliance_factory: object) -> None:
    """A job trickling one byte every 0.4 s is dropped at 30 s (it was stored cut short, as a receipt), and
    status queries from a client that reads none of its replies no longer hold a slot past the deadline."""
    app, port = printer_appliance(appliance_factory)
    allow(app, "127.0.0.0/24")
    job = (TAKEPOS / "bakery.bin").read_bytes()

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            try:
                for byte in job:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.4)
            except OSError:
                pass

    deaf = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(0.01)
        deaf.append(sock)
    import threading

    thread = threading.Thread(target=trickle)
    thread.start()
    end = time.monotonic() + 6
    while time.monotonic() < end:  # GS I 66: the maker's name, queued and never read
        for sock in deaf:
            try:
                sock.send(b"\x1dIB" * 1000)
            except OSError:
                pass
    wait_for(lambda: app.logs().count("dropped:") >= 3, 40, "the three jobs dropped at their deadline")
    thread.join(60)
    assert app.ticket_rows() == 0
    send_job(port, job, source="127.0.0.2")  # the deaf till's slots are free again
    wait_ticket(app)
    for sock in deaf:
        sock.close()
