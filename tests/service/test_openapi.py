"""The served OpenAPI schema is the contract of docs/protocol.md: a POS integrator generating a client from
``/openapi.json`` gets every endpoint, its request body and its problem responses (RFC 9457)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from openapi_spec_validator import validate

from appliance.errors import ApplianceError, RejectedPdf
from tests.conftest import REPO, Appliance

PROTOCOL = (REPO / "docs" / "protocol.md").read_text()
DEVICE_PART = PROTOCOL.split("\n## 9.")[0]  # §9 is the relay's API, served by the relay
ENDPOINT = re.compile(r"(?<![A-Za-z])(GET|POST|PUT|DELETE|HEAD|PATCH) (/[^\s`?)]*)(?=`?(.{0,14}))")
TABLE_ROW = re.compile(r"^\| (\d{3}) \| ([^|]+) \|", re.MULTILINE)
PAIRING_TYPES = {"bad-pairing-request", "json-too-deep", "pairing-refused", "pairing-locked", "pairing-busy"}


def documented_endpoints(text: str) -> set[tuple[str, str]]:
    """``{("get", "/r/{}"), ...}`` from the prose: ``METHOD /path`` (``<x>`` and ``{x}`` are parameters),
    plus ``HEAD`` where the text says "(and `HEAD`)" or "(or `HEAD`)" right after."""
    found = set()
    for method, path, after in ENDPOINT.findall(text):
        template = re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)
        found.add((method.lower(), template))
        if "`HEAD`" in after:
            found.add(("head", template))
    return found


def problem_table(text: str) -> dict[str, int]:
    """``{slug: status}`` from the §4 table."""
    table = text.split("## 4.")[1].split("\n## ")[0]
    return {slug: int(status) for status, cell in TABLE_ROW.findall(table) if status.isdigit()
            for slug in re.findall(r"`([a-z-]+)`", cell)}


def problems_of(operation: dict[str, Any]) -> dict[str, int]:
    """``{slug: status}`` of an operation's ``application/problem+json`` responses (their examples)."""
    found = {}
    for status, answer in operation["responses"].items():
        media = answer.get("content", {}).get("application/problem+json")
        for example in (media or {}).get("examples", {}).values():
            assert example["value"]["type"].endswith("/" + example["value"]["type"].rsplit("/", 1)[1])
            found[example["value"]["type"].rsplit("/", 1)[1]] = int(status)
    return found


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, re.sub(r"\{[^}]+\}", "{}", path)): op
            for path, item in schema["paths"].items() for method, op in item.items()}


def test_the_served_schema_documents_every_endpoint_of_the_protocol(appliance: Appliance) -> None:
    r = appliance.api.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    validate(schema)  # a valid OpenAPI document, so code generators take it
    ops = operations(schema)
    documented = documented_endpoints(DEVICE_PART)
    assert len(documented) >= 15, documented
    assert documented <= set(ops), f"documented in docs/protocol.md, missing from the schema: {documented - set(ops)}"

    table = problem_table(PROTOCOL)
    assert len(table) >= 25, table
    everywhere: dict[str, int] = {}
    for op in ops.values():
        everywhere.update(problems_of(op))
    assert {slug: status for slug, status in table.items() if slug != "method-not-allowed"}.items() <= \
        everywhere.items(), "problem types of docs/protocol.md §4 missing from the schema (or with another status)"

    errors_of_pairing = DEVICE_PART.split("Errors of §2:")[1].split("\n\n")[0]
    pairing = {slug: int(status) for status, slug in re.findall(r"`(\d{3}) ([a-z-]+)`", errors_of_pairing)}
    assert {"bad-pairing-request", "json-too-deep", "pairing-refused", "too-large", "pairing-locked"} <= set(pairing)
    for key in (("post", "/api/v1/pair"), ("post", "/api/v1/pair/spake2"),
                ("post", "/api/v1/pair/spake2/{}/confirm")):
        assert pairing.items() <= problems_of(ops[key]).items(), key
        assert "application/json" in ops[key]["requestBody"]["content"], key

    ticket = ops[("post", "/api/v1/tickets")]
    expected = {slug: status for slug, status in table.items()
                if slug not in PAIRING_TYPES | {"not-found", "expired", "receipt-damaged", "method-not-allowed",
                                                "till-not-allowed", "print-job-refused"}}
    assert expected.items() <= problems_of(ticket).items(), set(expected) - set(problems_of(ticket))
    assert {"application/pdf", "multipart/form-data"} <= set(ticket["requestBody"]["content"])
    assert ticket["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/TicketCreated")
    assert {p["name"] for p in ticket["parameters"]} >= {"total", "currency", "ref", "lang", "Idempotency-Key"}
    assert ticket["security"] == [{"posBearer": []}]
    assert "401" in ticket["responses"] and "WWW-Authenticate" in ticket["responses"]["401"]["headers"]

    connector = ops[("post", "/printer/index.php")]  # §12.2
    assert {"till-not-allowed": 403, "print-job-refused": 422}.items() <= problems_of(connector).items()
    assert "application/x-www-form-urlencoded" in connector["requestBody"]["content"]

    download = ops[("get", "/r/{}")]
    assert {"not-found": 404, "expired": 410, "receipt-damaged": 500}.items() <= problems_of(download).items()
    assert "application/pdf" in download["responses"]["200"]["content"]
    assert download["servers"][0]["url"].startswith("http://")  # customers and screens use the plain port
    for op in ops.values():
        assert "422" not in op["responses"] or "problem+json" in str(op["responses"]["422"]), op["operationId"]


def test_only_the_pos_api_port_serves_the_schema_and_no_docs_page(appliance: Appliance) -> None:
    """Phones on the plain-HTTP port need none of it; no Swagger page (it would load a CDN's scripts)."""
    assert httpx.get(appliance.url + "/openapi.json").status_code == 404
    for path in ("/docs", "/redoc"):
        assert appliance.api.get(path).status_code == 404
        assert httpx.get(appliance.url + path).status_code == 404


def test_the_protocol_parser_sees_what_the_text_says() -> None:
    """The parsers of this file on a sample of the doc's own phrasing (so the test above cannot pass empty)."""
    sample = "`GET /r/{token}` (and `HEAD`) and `POST /screen/claim/<secret>` spends it; `GET /healthz` (or `HEAD`)"
    assert documented_endpoints(sample) == {("get", "/r/{}"), ("head", "/r/{}"), ("post", "/screen/claim/{}"),
                                            ("get", "/healthz"), ("head", "/healthz")}
    assert problem_table("## 4. E\n| 422 | `a-b`, `c` | x |\n## 5.") == {"a-b": 422, "c": 422}
    assert Path(REPO / "docs" / "protocol.md").exists()


def _error_classes(base: type[ApplianceError]) -> list[type[ApplianceError]]:
    found: list[type[ApplianceError]] = []
    for sub in base.__subclasses__():
        found += [sub, *_error_classes(sub)]
    return found


def test_every_problem_type_the_device_answers_is_in_the_table() -> None:
    """The other direction of the check above: a type the code raises (``invalid-ticket`` for a bad ``lang``
    once was not) but §4 does not list leaves a POS vendor with an undocumented answer. Only the abstract
    ``pdf-rejected`` (never raised itself; its subclasses are) is left out."""
    table = problem_table(PROTOCOL)
    raised = {cls.slug: cls.status for cls in _error_classes(ApplianceError)
              if cls.__module__ == "appliance.errors" and cls is not RejectedPdf}
    assert len(raised) >= 25, raised
    missing = {slug: status for slug, status in raised.items() if table.get(slug) != status}
    assert not missing, f"problem types missing from docs/protocol.md §4 (or with another status): {missing}"
