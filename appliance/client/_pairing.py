"""Pairing from the POS side: by the scanned QR (certificate pinned from the QR) or by typed code (SPAKE2)."""

from __future__ import annotations

from .._paths import split_host_port
from ..identity import fetch_certificate, fingerprint_pem
from ..pairing import parse_pairing_uri
from ._api import ClientError, DeviceClient, PinMismatchError
from ._credentials import PairedDevice


def _certificate(address: str) -> str:
    host, port = split_host_port(address)
    try:
        return fetch_certificate(host, port)
    except OSError as exc:
        raise ClientError(f"cannot reach the device's HTTPS API at {address}: {exc}") from exc


def pair_with_uri(uri: str, pos_name: str = "POS") -> PairedDevice:
    """Pair using the text of the device's pairing QR; return the credentials to keep.

    The certificate the device presents must match the QR's ``fp`` before anything is sent.

    Raises:
        ValueError: not a pairing URI. PinMismatchError: the certificate is not the one on the screen.
        RefusedError: the device refused (used or expired secret, locked). ClientError: unreachable.
    """
    fields = parse_pairing_uri(uri)
    pem = _certificate(fields["addr"])
    if fingerprint_pem(pem) != fields["fp"]:
        raise PinMismatchError(
            f"the device at {fields['addr']} presented a certificate that is not the one in the QR code: "
            "someone may be between this POS and the device. Nothing was sent."
        )
    with DeviceClient(fields["addr"], cert_pem=pem) as client:
        answer = client.pair_with_secret(fields["s"], pos_name)
    if answer["device_id"] != fields["id"]:
        raise ClientError(f"the device answered as {answer['device_id']}, but the QR names {fields['id']}")
    return PairedDevice(device_id=answer["device_id"], name=fields["name"] or answer["device_id"],
                        address=fields["addr"], pos_id=answer["pos_id"], token=answer["token"], cert_pem=pem)


def pair_with_code(address: str, code: str, pos_name: str = "POS", device_id: str | None = None) -> PairedDevice:
    """Pair with the short code shown on the device screen, by SPAKE2 bound to the TLS certificate.

    A relay in between (its own certificate) makes the exchange fail; the code is never sent.

    Raises:
        RefusedError: wrong code / relayed channel (403), locked (429). ClientError: unreachable, or the
            device could not prove the same key.
    """
    pem = _certificate(address)
    with DeviceClient(address, cert_pem=pem) as client:
        health = client.health()
        seen_id = str(health["device_id"])
        if device_id is not None and seen_id != device_id:
            raise ClientError(f"the device at {address} is {seen_id}, not {device_id}")
        grant = client.pair_with_code(code, seen_id, fingerprint_pem(pem), pos_name)
    if grant.get("device_id") != seen_id:
        raise ClientError("the pairing grant names another device")
    shown = health.get("name")
    name = shown if isinstance(shown, str) and shown else seen_id  # an older device has no name in /healthz
    return PairedDevice(device_id=seen_id, name=name, address=address, pos_id=str(grant["pos_id"]),
                        token=str(grant["token"]), cert_pem=pem)
