"""The POS side: find a device (mDNS), pair with it, send receipts. For integrators and tests.

    from appliance.client import discover, DeviceClient, Credentials
    devices = discover(timeout=2.0, interfaces=["127.0.0.1"])
    client = DeviceClient(devices[0].api_address)
    token = client.pair(code="ABCD-EFGH", name="Till 1")
"""

from ._api import ClientError, DeviceClient, RefusedError, SentTicket
from ._credentials import Credentials, PairedDevice
from ._discover import DiscoveredDevice, discover

__all__ = [
    "ClientError",
    "Credentials",
    "DeviceClient",
    "DiscoveredDevice",
    "PairedDevice",
    "RefusedError",
    "SentTicket",
    "discover",
]
