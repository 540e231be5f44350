"""The POS side: find a device (mDNS), pair with it, send receipts. For integrators and tests.

    from appliance.client import Credentials, DeviceClient, discover, pair_with_code, pair_with_uri
    devices = discover(timeout=2.0, interfaces=["127.0.0.1"])
    paired = pair_with_code(devices[0].api_address, "ABCD-EFGH", "Till 1")   # or pair_with_uri(qr_text)
    Credentials().save(paired)
    with DeviceClient(paired.address, paired.token, paired.cert_pem) as client:
        print(client.send(pdf_bytes, total="12.50", currency="EUR").url)
"""

from ._api import ClientError, DeviceClient, PinMismatchError, RefusedError, SentTicket
from ._credentials import Credentials, PairedDevice
from ._discover import DiscoveredDevice, discover
from ._pairing import pair_with_code, pair_with_uri

__all__ = [
    "ClientError",
    "Credentials",
    "DeviceClient",
    "DiscoveredDevice",
    "PairedDevice",
    "PinMismatchError",
    "RefusedError",
    "SentTicket",
    "discover",
    "pair_with_code",
    "pair_with_uri",
]
