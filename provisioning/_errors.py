"""Provisioning errors.

Our exception hierarchy:
* ProvisioningError: the settings cannot be applied; the message names the file and the key.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """eticket.toml is unreadable or has a wrong value; the message names the file and the key, and says
    what a right value looks like."""
