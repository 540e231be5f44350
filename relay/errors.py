"""Refusals of the relay, each an RFC 9457 problem detail (rendered like the appliance's).

    BadRequest (400 bad-request)         malformed receipt id, expiry or status query
    JsonTooDeep (400 json-too-deep)      a status body nested over MAX_JSON_DEPTH (appliance.web.common)
    BadSignatureError (401 bad-signature) unsigned, stale or wrongly signed request
    DeviceBlocked (403 device-blocked)   the relay's operator blocked this device
    NotFound (404 not-found) / Gone (410 expired)
    ReceiptConflict (409 receipt-conflict) another receipt already has this id
    PayloadTooLarge (413 too-large)
    QuotaExceeded (429 quota-exceeded)   receipts or bytes per device per UTC day; Retry-After
    NetworkQuotaExceeded (429 network-quota-exceeded) receipts or bytes per client network per UTC day, all
                                         device keys together; Retry-After
    TooManyNewDevices (429 too-many-new-devices) new device keys per client network per UTC day; Retry-After
    TooManyMisses (429 too-many-misses)  unknown links from one client address; Retry-After
    TooManyRequests (429 too-many-requests) concurrent uploads or long polls over the limit
    DamagedReceipt (500 receipt-damaged) stored bytes fail AES-GCM authentication
"""

from __future__ import annotations

from appliance.errors import ApplianceError, BadRequest, Gone, NotFound, PayloadTooLarge

__all__ = ["BadRequest", "BadSignatureError", "DamagedReceipt", "DeviceBlocked", "Gone", "NetworkQuotaExceeded",
           "NotFound", "PayloadTooLarge", "QuotaExceeded", "ReceiptConflict", "TooManyMisses", "TooManyNewDevices",
           "TooManyRequests"]


class BadSignatureError(ApplianceError):
    """The request is not signed by a device key, or the signature, key or date is wrong."""

    status = 401
    slug = "bad-signature"
    title = "Bad signature"


class DeviceBlocked(ApplianceError):
    """The relay's operator blocked this device (``eticket relay block``)."""

    status = 403
    slug = "device-blocked"
    title = "Device blocked"


class ReceiptConflict(ApplianceError):
    """A different receipt, or another device's, is stored under this id."""

    status = 409
    slug = "receipt-conflict"
    title = "Receipt conflict"


class QuotaExceeded(ApplianceError):
    """The device used its receipts or bytes for this UTC day."""

    status = 429
    slug = "quota-exceeded"
    title = "Quota exceeded"


class NetworkQuotaExceeded(ApplianceError):
    """The client's network (IPv4 address, IPv6 /64) used its receipts or bytes for this UTC day, all device keys
    together (a new key does not escape it)."""

    status = 429
    slug = "network-quota-exceeded"
    title = "Network quota exceeded"


class TooManyNewDevices(ApplianceError):
    """The client's network already brought today's allowance of device keys new to this relay."""

    status = 429
    slug = "too-many-new-devices"
    title = "Too many new devices"


class TooManyMisses(ApplianceError):
    """Too many unknown receipt links from one client address."""

    status = 429
    slug = "too-many-misses"
    title = "Too many requests"


class DamagedReceipt(ApplianceError):
    """The stored bytes do not authenticate under the token's key (storage damaged or tampered with)."""

    status = 500
    slug = "receipt-damaged"
    title = "Receipt damaged"


class TooManyRequests(ApplianceError):
    """Too many concurrent uploads or status polls from one client address or device."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"
