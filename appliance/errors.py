"""Errors raised by the appliance, each mapped to an RFC 9457 problem detail.

Our exception hierarchy::

    ApplianceError                    (500, base; never raised bare)
    ├── BadRequest                    (400)
    │   ├── EmptyBody                 (400 empty-body)
    │   ├── MissingFile               (400 missing-file)
    │   ├── BadMultipart              (400 bad-multipart)
    │   ├── JsonTooDeep               (400 json-too-deep)
    │   └── BadPairingRequest         (400 bad-pairing-request)
    ├── Unauthorized                  (401 unauthorized)
    ├── PairingRefused                (403 pairing-refused)
    ├── TillNotAllowed                (403 till-not-allowed)
    ├── PairingLocked                 (429 pairing-locked)
    ├── PairingBusy                   (429 pairing-busy)
    ├── NotFound                      (404 not-found)
    ├── Gone                          (410 expired)
    ├── ReceiptDamaged                (500 receipt-damaged)
    ├── StorageUnavailable            (503 storage-unavailable)
    │   └── StorageDamaged            (503 storage-damaged)
    ├── RequestTimeout                (408 request-timeout)
    ├── PayloadTooLarge               (413 too-large)
    ├── UnsupportedMediaType          (415 unsupported-media-type)
    ├── TooManyConnections            (503 too-many-connections)
    ├── IdempotencyKeyReused          (422 idempotency-key-reused)
    ├── PrintJobRefused               (422 print-job-refused)
    ├── InvalidTicket                 (422, a field of the ticket is wrong)
    │   ├── InvalidTotal              (422 invalid-total)
    │   ├── InvalidCurrency           (422 invalid-currency)
    │   └── InvalidReference          (422 invalid-reference)
    └── RejectedPdf                   (422, the document is not a usable receipt)
        ├── NotAPdf                   (422 not-a-pdf)
        ├── UnreadablePdf             (422 pdf-unreadable)
        ├── PasswordProtectedPdf      (422 pdf-password-protected)
        ├── PdfWithoutPages           (422 pdf-no-pages)
        ├── PdfWithoutUsablePage      (422 pdf-no-usable-page)
        ├── PdfTooComplex             (422 pdf-too-complex)
        ├── PdfWithJavaScript         (422 pdf-javascript)
        └── PdfWithLaunchAction       (422 pdf-launch-action)

Every class carries ``status`` (HTTP status code), ``slug`` (the stable last part of the problem ``type``
URI, so clients switch on it and never on wording) and ``title``. The instance message is the ``detail``:
it says what is wrong and, where it helps, what to do.
"""

from __future__ import annotations

PROBLEM_TYPE_BASE = "https://eticket.invalid/problems/"
"""Base of problem ``type`` URIs. ``.invalid`` (RFC 2606) never resolves: the URI is an identifier only."""


class ApplianceError(Exception):
    """Base of every error the appliance turns into a problem detail."""

    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str, **extensions: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self, instance: str | None = None) -> dict[str, object]:
        """Return the RFC 9457 problem-details object: ``{type, title, status, detail, [instance], ...}``."""
        body: dict[str, object] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequest(ApplianceError):
    """The request is malformed."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class EmptyBody(BadRequest):
    """The request carried no receipt bytes."""

    slug = "empty-body"
    title = "Empty body"


class MissingFile(BadRequest):
    """A multipart request had no ``file`` part."""

    slug = "missing-file"
    title = "Missing file part"


class BadMultipart(BadRequest):
    """The multipart/form-data body is malformed (boundary, parts, field limits)."""

    slug = "bad-multipart"
    title = "Malformed multipart body"


class JsonTooDeep(BadRequest):
    """A JSON body nests arrays and objects deeper than the named limit (``max_depth`` extension member)."""

    slug = "json-too-deep"
    title = "JSON nested too deeply"


class BadPairingRequest(BadRequest):
    """The pairing request is not of the documented form."""

    slug = "bad-pairing-request"
    title = "Bad pairing request"


class Unauthorized(ApplianceError):
    """No valid bearer token was presented."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class PairingRefused(ApplianceError):
    """The pairing code is wrong, expired, already used, or the pairing window is closed."""

    status = 403
    slug = "pairing-refused"
    title = "Pairing refused"


class TillNotAllowed(ApplianceError):
    """A print job (port 9100 or the TakePOS connector) came from an address no till allowance covers
    (``eticket printers allow``), while pairing was closed."""

    status = 403
    slug = "till-not-allowed"
    title = "Till not allowed to print"


class PrintJobRefused(ApplianceError):
    """A print job (ESC/POS bytes) makes no receipt: nothing printable, over a limit of
    :class:`appliance.escpos.interpreter.Limits`, or its conversion failed or overran its time or memory."""

    status = 422
    slug = "print-job-refused"
    title = "Print job refused"


class PairingLocked(ApplianceError):
    """Too many wrong attempts: pairing is locked for a while (extension member ``retry_after``, seconds)."""

    status = 429
    slug = "pairing-locked"
    title = "Pairing locked"


class PairingBusy(ApplianceError):
    """Every typed-code exchange slot is held by an exchange started moments ago: retry after
    ``retry_after`` seconds (extension member and ``Retry-After``)."""

    status = 429
    slug = "pairing-busy"
    title = "Pairing busy"


class NotFound(ApplianceError):
    """No such resource."""

    status = 404
    slug = "not-found"
    title = "Not found"


class Gone(ApplianceError):
    """The receipt existed but its retention period is over."""

    status = 410
    slug = "expired"
    title = "Receipt expired"


class ReceiptDamaged(ApplianceError):
    """The receipt is known but its PDF was damaged in the device's storage (it no longer matches its SHA-256,
    or a repair could not recover it): it is never served; the customer asks at the counter."""

    status = 500
    slug = "receipt-damaged"
    title = "Receipt damaged"


class StorageUnavailable(ApplianceError):
    """The device's storage refused the operation (I/O error, full, read-only); nothing was stored."""

    status = 503
    slug = "storage-unavailable"
    title = "Storage unavailable"


class StorageDamaged(StorageUnavailable):
    """The database is damaged and the repair the device made at once did not help."""

    slug = "storage-damaged"
    title = "Storage damaged"


class RequestTimeout(ApplianceError):
    """The client stopped sending its body before it was complete."""

    status = 408
    slug = "request-timeout"
    title = "Request body not received in time"


class PayloadTooLarge(ApplianceError):
    """The body is over the limit (``max_body_bytes`` for receipts)."""

    status = 413
    slug = "too-large"
    title = "Body too large"


class TooManyConnections(ApplianceError):
    """A connection over the caps of :mod:`appliance.admission`; sent before any request is read."""

    status = 503
    slug = "too-many-connections"
    title = "Too many connections"


class UnsupportedMediaType(ApplianceError):
    """The request's Content-Type is neither ``application/pdf`` nor ``multipart/form-data``."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class IdempotencyKeyReused(ApplianceError):
    """An ``Idempotency-Key`` was sent again with a different receipt."""

    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused for a different ticket"


class InvalidTicket(ApplianceError):
    """A metadata field of the ticket is wrong."""

    status = 422
    slug = "invalid-ticket"
    title = "Invalid ticket"


class InvalidTotal(InvalidTicket):
    """The total is not a decimal string."""

    slug = "invalid-total"
    title = "Invalid total"


class InvalidCurrency(InvalidTicket):
    """The currency is not an ISO 4217 alphabetic code."""

    slug = "invalid-currency"
    title = "Invalid currency"


class InvalidReference(InvalidTicket):
    """The POS reference is too long or holds control characters."""

    slug = "invalid-reference"
    title = "Invalid reference"


class RejectedPdf(ApplianceError):
    """The body is not a receipt PDF a customer could open."""

    status = 422
    slug = "pdf-rejected"
    title = "PDF rejected"


class NotAPdf(RejectedPdf):
    """The body does not start with a PDF header."""

    slug = "not-a-pdf"
    title = "Not a PDF"


class UnreadablePdf(RejectedPdf):
    """The PDF is truncated or too damaged to open."""

    slug = "pdf-unreadable"
    title = "PDF cannot be opened"


class PasswordProtectedPdf(RejectedPdf):
    """The PDF needs a user password to open."""

    slug = "pdf-password-protected"
    title = "PDF needs a password"


class PdfWithoutPages(RejectedPdf):
    """The PDF has zero pages."""

    slug = "pdf-no-pages"
    title = "PDF has no pages"


class PdfWithoutUsablePage(RejectedPdf):
    """No page of the PDF can be shown (broken page tree, degenerate page size)."""

    slug = "pdf-no-usable-page"
    title = "PDF has no usable page"


class PdfTooComplex(RejectedPdf):
    """More pages or objects than any receipt has (a resource-exhaustion attempt or the wrong file)."""

    slug = "pdf-too-complex"
    title = "PDF too complex for a receipt"


class PdfWithJavaScript(RejectedPdf):
    """The PDF carries JavaScript (or an XFA form, which carries scripts); receipts never carry code."""

    slug = "pdf-javascript"
    title = "PDF carries JavaScript"


class PdfWithLaunchAction(RejectedPdf):
    """The PDF asks the viewer to launch a program or open a file (``/S /Launch``)."""

    slug = "pdf-launch-action"
    title = "PDF launches programs"
