"""``eticket kiosk``: run the counter screen, or render one snapshot of it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 800x480 (got {text!r})") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size {w}x{h} is out of range (64 to 8192 pixels a side)")
    return w, h


def _inches(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the diagonal must be a number of inches, e.g. 3.5 (got {text!r})") from None
    if not 1.0 <= value <= 120.0:
        raise argparse.ArgumentTypeError(f"a diagonal of {value:g} inches is out of range (1 to 120)")
    return value


EXIT_TOKEN_REFUSED = 75
"""EX_TEMPFAIL: the appliance refused the local kiosk's token (it restarted); a restart reads the new one."""


def _kiosk(args: argparse.Namespace) -> int:
    from appliance._paths import configure_logging, default_data_dir
    from appliance._sdnotify import Notifier

    from .app import run, snapshot

    configure_logging(args.log_level)
    data_dir = args.data_dir or default_data_dir()
    if args.claim:
        import httpx

        from appliance.client import RefusedError

        from .follow import claim_screen

        try:
            endpoint = claim_screen(args.claim, data_dir)
        except (ValueError, httpx.HTTPError, RefusedError) as exc:
            print(f"eticket: error: cannot pair this screen: {exc}", file=sys.stderr)
            return 1
        print(f"this screen is paired with {endpoint.url}; its token is in {data_dir}/kiosk.json")
    if args.snapshot:
        ok = snapshot(data_dir, args.size or (800, 480), args.snapshot, args.rotate, args.diagonal_inches)
        if not ok:
            print("eticket: warning: appliance unreachable; the snapshot shows the connecting scene", file=sys.stderr)
        return 0
    from .app import TokenRefused
    from .fbdev import FramebufferError

    try:
        run(data_dir, args.size, args.fullscreen, args.rotate, args.fbdev, Notifier.from_environ(os.environ),
            diagonal_inches=args.diagonal_inches)
    except FramebufferError as exc:
        print(f"eticket: error: {exc}", file=sys.stderr)
        return 1
    except TokenRefused as exc:
        print(f"eticket: {exc}", file=sys.stderr)
        return EXIT_TOKEN_REFUSED  # try again (systemd's Restart=, or the appliance's kiosk supervisor)
    return 0


def add_kiosk_parser(sub: Any) -> None:
    """Add ``kiosk`` to the ``eticket`` subparsers."""
    p = sub.add_parser("kiosk", help="run the counter screen (pygame-ce), or render a snapshot of it")
    p.add_argument("--data-dir", type=Path, help="the appliance's data dir (holds kiosk.json)")
    p.add_argument("--size", type=_size, help="WIDTHxHEIGHT in pixels (default 800x480, or the screen's)")
    p.add_argument("--fullscreen", action="store_true", help="fill the display (on the device)")
    p.add_argument("--rotate", type=int, choices=[0, 90, 180, 270], default=0,
                   help="turn the picture clockwise to match how the panel is mounted")
    p.add_argument("--fbdev", type=Path, metavar="/dev/fbN",
                   help="draw on a raw framebuffer (SPI panels without a KMS driver) instead of SDL")
    p.add_argument("--diagonal-inches", type=_inches, metavar="INCHES",
                   help="the panel's diagonal, e.g. 3.5 (default: what its EDID says, else judged by resolution): "
                        "under 4\" the receipt screen asks to hold the phone close; on large monitors the QR is "
                        "kept to what a phone at 30 cm frames")
    p.add_argument("--snapshot", type=Path, metavar="FILE.png", help="render the current screen to a PNG and exit")
    p.add_argument("--claim", metavar="LINK", help="pair this screen with the one-time link that "
                   "'eticket screens add' shows on the device, then run (a second screen on another machine)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_kiosk)
