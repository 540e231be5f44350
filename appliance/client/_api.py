"""HTTP client for one device's API (docs/protocol.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_TIMEOUT_SECONDS = 30.0
SEND_ATTEMPTS = 3
"""Transport failures are retried with the same Idempotency-Key, so a retry never makes a second ticket."""


class ClientError(Exception):
    """The device could not be reached or answered something unexpected."""


class RefusedError(ClientError):
    """The device refused the request with a problem detail: ``status``, ``slug`` (problem type), ``detail``."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(f"{detail} ({status} {slug})")
        self.status = status
        self.slug = slug
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SentTicket:
    """What the device answered: ``url`` is the customer's download URL; ``expires_at`` RFC 3339."""

    id: str
    url: str
    expires_at: str
    replayed: bool


def _refusal(response: httpx.Response) -> RefusedError:
    try:
        problem = response.json()
        slug = str(problem.get("type", "")).rsplit("/", 1)[-1] or "error"
        detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
    except ValueError:
        slug, detail = "error", response.text[:200] or response.reason_phrase
    return RefusedError(response.status_code, slug, detail)


class DeviceClient:
    """Talks to the device at ``address`` (``host:port``) with bearer ``token`` (None before pairing)."""

    def __init__(self, address: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.base_url = f"http://{address}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the device at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _refusal(response)
        return response

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        result: dict[str, Any] = self._request("GET", "/healthz").json()
        return result

    def pair(self, code: str, name: str = "POS") -> dict[str, str]:
        """Exchange an on-screen pairing code for a token: ``{"pos_id", "token", "device_id", "api"}``.

        Raises:
            RefusedError: 403 pairing-refused (wrong/expired code, pairing closed).
            ClientError: device unreachable.
        """
        result: dict[str, str] = self._request("POST", "/api/v1/pair", json={"code": code, "name": name}).json()
        return result

    def send(self, pdf: bytes, *, total: str | None = None, currency: str | None = None,
             ref: str | None = None, idempotency_key: str | None = None) -> SentTicket:
        """Send one receipt PDF; retry transport failures with the same ``Idempotency-Key`` (a UUID4 by default).

        Raises:
            RefusedError: the device refused it (401 unpaired, 413, 415, 422 …: ``slug`` says which).
            ClientError: the device stayed unreachable over SEND_ATTEMPTS tries.
        """
        key = idempotency_key or str(uuid.uuid4())
        params = {k: v for k, v in (("total", total), ("currency", currency), ("ref", ref)) if v is not None}
        headers = {"Content-Type": "application/pdf", "Idempotency-Key": key}
        last: ClientError | None = None
        for _ in range(SEND_ATTEMPTS):
            try:
                response = self._request("POST", "/api/v1/tickets", content=pdf, params=params, headers=headers)
            except RefusedError:
                raise
            except ClientError as exc:
                last = exc
                continue
            body = response.json()
            return SentTicket(id=body["id"], url=body["url"], expires_at=body["expires_at"],
                              replayed=response.headers.get("idempotent-replayed") == "true")
        assert last is not None
        raise last

    def clear_display(self) -> None:
        """``DELETE /api/v1/display``: take the receipt off the screen."""
        self._request("DELETE", "/api/v1/display")
