"""HTTP client for one device's API (docs/protocol.md)."""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from ..identity import pinned_client_context
from ..pairing import PosSide, b64d, b64e, normalise_code

DEFAULT_TIMEOUT_SECONDS = 30.0
SEND_ATTEMPTS = 3
"""Transport failures are retried with the same Idempotency-Key, so a retry never makes a second ticket."""


class ClientError(Exception):
    """The device could not be reached or answered something unexpected."""


class PinMismatchError(ClientError):
    """The device presented a certificate other than the pinned one: a different device, or an attacker."""


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
    """Talks to the device's API at ``address`` (``host:port``) with bearer ``token`` (None before pairing).

    ``cert_pem``: the device certificate to pin (HTTPS: nothing is sent unless the server proves it holds
    that certificate's key). Without it the API is spoken in plain HTTP (devices run with ``--no-tls``).
    """

    def __init__(self, address: str, token: str | None = None, cert_pem: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.base_url = f"{'https' if cert_pem else 'http'}://{address}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = pinned_client_context(cert_pem) if cert_pem else True
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, verify=verify)

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
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise PinMismatchError(
                    f"the device at {self.address} presented a different certificate than the one paired: "
                    "a different device, or someone in between. If the device was reset, pair again."
                ) from exc
            raise ClientError(f"cannot reach the device at {self.base_url}: {exc}") from exc
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the device at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _refusal(response)
        return response

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        result: dict[str, Any] = self._request("GET", "/healthz").json()
        return result

    def pair_with_secret(self, secret: str, name: str = "POS") -> dict[str, str]:
        """``POST /api/v1/pair`` with the QR's secret: ``{"pos_id", "token", "device_id", "api"}``.

        Raises:
            RefusedError: 403 pairing-refused, 429 pairing-locked. ClientError: unreachable.
        """
        result: dict[str, str] = self._request("POST", "/api/v1/pair", json={"secret": secret, "name": name}).json()
        return result

    def pair_with_code(self, code: str, device_id: str, pin_seen: str, name: str = "POS") -> dict[str, Any]:
        """SPAKE2 pairing with a typed code (appliance.pairing._spake); ``pin_seen`` is the fingerprint of
        the certificate this connection is pinned to. Returns the grant ``{"token", "pos_id", "device_id"}``.

        Raises:
            RefusedError: wrong code or relayed channel (403), locked (429).
            ClientError: the device's confirmation does not match (not the same channel).
        """
        side = PosSide(normalise_code(code), device_id)
        start = self._request("POST", "/api/v1/pair/spake2", json={"msg": b64e(side.msg_a)}).json()
        try:
            confirm = side.receive(b64d(str(start["msg"])), pin_seen)
        except (ValueError, KeyError) as exc:
            raise ClientError(f"pairing failed: {exc}") from exc
        done = self._request("POST", f"/api/v1/pair/spake2/{start['session']}/confirm",
                             json={"confirm": b64e(confirm), "name": name}).json()
        try:
            return side.open(b64d(done["confirm"]), b64d(done["sealed"]))
        except ValueError as exc:
            raise ClientError(f"pairing failed: {exc}") from exc

    def send(self, pdf: bytes, *, total: str | None = None, currency: str | None = None,
             ref: str | None = None, idempotency_key: str | None = None, lang: str | None = None) -> SentTicket:
        """Send one receipt PDF; retry transport failures with the same ``Idempotency-Key`` (a UUID4 by default).
        ``lang``: the screen language for this customer (fr, it, en, de, es; docs/protocol.md §3), default the
        device's.

        Raises:
            RefusedError: the device refused it (401 unpaired, 413, 415, 422 …: ``slug`` says which).
            ClientError: the device stayed unreachable over SEND_ATTEMPTS tries.
        """
        key = idempotency_key or str(uuid.uuid4())
        params = {k: v for k, v in (("total", total), ("currency", currency), ("ref", ref),
                                                  ("lang", lang)) if v is not None}
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
        """``DELETE /api/v1/display``: take the receipt off the screen (it returns to idle).

        Raises:
            RefusedError: 401 (not paired, or revoked). ClientError: unreachable.
        """
        self._request("DELETE", "/api/v1/display")

    def pairing(self) -> dict[str, str]:
        """``GET /api/v1/pairing``: this POS's pairing as the device sees it now, ``{"pos_id", "name",
        "paired_at"}`` (RFC 3339); a cheap way to learn whether the token still works (docs/protocol.md §2.4).

        Raises:
            RefusedError: 401 once the device revoked this POS (or never paired it). ClientError: unreachable.
        """
        result: dict[str, str] = self._request("GET", "/api/v1/pairing").json()
        return result
