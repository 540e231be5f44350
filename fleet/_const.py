"""Defaults of ``eticket fleet`` that its argument parser shows; here so that building the parser (every
``eticket`` command, on the device too) imports nothing heavy (asyncssh is imported only by the commands)."""

from __future__ import annotations

DEFAULT_PARALLEL = 10
"""Devices handled at once, in the pre-flight and within a wave (Ansible's forks default to 5)."""
REBOOT_DEADLINE_SECONDS = 1200.0
"""From the install's return to a committed (or rolled-back) new slot: the device's health gate allows 600 s
(docs/fleet.md §11 ``eticket update commit``), plus two boots on a slow SD card and a fallback reboot."""
BROWSE_SECONDS = 3.0
"""How long ``eticket fleet discover`` listens for mDNS answers."""
