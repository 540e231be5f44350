"""The relay's per-network daily limits, alone in a module without imports: ``eticket``'s parser shows them
in ``relay serve --help``, and every ``eticket`` command (the device's kiosk too) builds that parser, so it
must not load the relay's server (FastAPI, cryptography) to do it. :mod:`relay.quotas` enforces them."""

from __future__ import annotations

NETWORK_RECEIPTS_PER_DAY = 50_000
"""Receipts per client network per UTC day, all device keys together: ten busy counters behind one NAT."""
NETWORK_BYTES_PER_DAY = 4 << 30
"""Bytes per client network per UTC day (4 GiB), all device keys together (receipts are typically 20–60 KB)."""
NEW_DEVICES_PER_NETWORK_PER_DAY = 20
"""Device keys seen for the first time, per client network per UTC day (a shop installing its counters)."""
