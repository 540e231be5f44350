"""``eticket pairings list | revoke ID | open``, ``eticket screens``, ``eticket printers allow ADDRESS | list |
revoke ID`` and ``eticket status``: device-side commands over the local
admin socket (``<data_dir>/admin.sock``, owner-only), so only the appliance's own user can run them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ADMIN_SOCKET = "admin.sock"


def _call(args: argparse.Namespace, method: str, path: str) -> Any:
    import httpx

    from ._paths import default_data_dir

    sock = (args.data_dir or default_data_dir()) / ADMIN_SOCKET
    if not sock.exists():
        raise SystemExit(f"eticket: error: no appliance running with data dir {sock.parent} (no {sock.name})")
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://device",
                          timeout=10) as client:
            response = client.request(method, path)
    except (httpx.TransportError, PermissionError) as exc:
        raise SystemExit(f"eticket: error: cannot talk to the appliance at {sock}: {exc}") from exc
    if response.status_code >= 400:
        raise SystemExit(f"eticket: error: {_detail(response)}")
    try:
        return response.json() if response.content else None
    except ValueError as exc:
        raise SystemExit(f"eticket: error: the appliance at {sock} answered something that is not JSON "
                         f"({response.status_code})") from exc


def _detail(response: Any) -> str:
    """One line from an error answer: the problem's ``detail`` (RFC 9457), else the first line of the body."""
    try:
        problem = response.json()
        if isinstance(problem, dict) and problem.get("detail"):
            return str(problem["detail"])
    except ValueError:  # an answer from outside our problem handlers (a plain-text 500)
        pass
    first = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    return f"the appliance answered {response.status_code}: {first}"


def _list(args: argparse.Namespace, kind: str, empty: str) -> None:
    rows = _call(args, "GET", f"/{kind}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(empty)
    for row in rows:
        print(f"{row['id']}  {row['name']!r}  paired {row['paired_at']}")


def _revoke(args: argparse.Namespace, kind: str, what: str) -> None:
    if not args.id:
        raise SystemExit(f"eticket: error: {kind} revoke needs the {what} id (see 'eticket {kind} list')")
    _call(args, "DELETE", f"/{kind}/{args.id}")
    print(f"revoked {args.id}: its token no longer works")


def _pairings(args: argparse.Namespace) -> int:
    if args.action == "list":
        _list(args, "pairings", "no POS paired")
    elif args.action == "revoke":
        _revoke(args, "pairings", "POS")
    else:
        answer = _call(args, "POST", "/pairings/open")
        until = answer["closes_at"] or "the first pairing"
        print(f"pairing open until {until}: the screen shows the QR and the code")
    return 0


def _screens(args: argparse.Namespace) -> int:
    if args.action == "list":
        _list(args, "screens", "no extra screen paired (the local kiosk needs no pairing)")
    elif args.action == "revoke":
        _revoke(args, "screens", "screen")
    else:
        from urllib.parse import quote

        answer = _call(args, "POST", f"/screens?name={quote(args.name)}")
        if args.json:
            print(json.dumps({"id": answer["id"], "name": answer["name"], "link": answer["url"],
                              "expires": answer["expires_at"]}, indent=2))
            return 0
        print(f"one-time link for screen {answer['id']} ({answer['name']!r}), valid until {answer['expires_at']}:\n"
              f"  {answer['url']}\n"
              "The device screen shows it as a QR too. Open it in the new screen's browser and press the\n"
              "button, or run there: eticket kiosk --claim LINK")
    return 0


def _printers(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    if args.action == "allow":
        if not args.target:
            raise SystemExit("eticket: error: printers allow needs an address, e.g. 192.168.1.30 or 192.168.1.0/24")
        name = f"&name={quote(args.name)}" if args.name else ""
        till = _call(args, "POST", f"/printers?address={quote(args.target)}{name}")
        if args.json:
            print(json.dumps(till, indent=2))
        elif till["created"]:
            print(f"allowed {till['network']} to print as {till['id']} ({till['name']!r})")
        else:
            print(f"{till['network']} was already allowed to print ({till['id']})")
    elif args.action == "list":
        rows = _call(args, "GET", "/printers")
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print("no till may print yet: 'eticket printers allow ADDRESS', or print while pairing is open")
        else:
            print("ID             NETWORK               HOW      SINCE                 NAME")
            for row in rows:
                print(f"{row['id']:<14} {row['network']:<21} {row['how']:<8} {row['added_at']:<21} {row['name']}")
    else:
        if not args.target:
            raise SystemExit("eticket: error: printers revoke needs the till id (see 'eticket printers list')")
        _call(args, "DELETE", f"/printers/{quote(args.target)}")
        print(f"revoked {args.target}: its print jobs are refused from now on")
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(_call(args, "GET", "/status"), indent=2))
    return 0


def add_admin_parsers(sub: Any) -> None:
    """Add ``pairings``, ``screens``, ``printers`` and ``status`` to the ``eticket`` subparsers."""
    p = sub.add_parser("pairings", help="on the device: list, revoke or open POS pairings")
    p.add_argument("action", choices=["list", "revoke", "open"])
    p.add_argument("id", nargs="?", help="the POS id to revoke")
    p.add_argument("--data-dir", type=Path, help="the appliance's data dir (holds admin.sock)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_pairings)
    p = sub.add_parser("screens", help="on the device: add (prints a one-time link, also shown as a QR), list or "
                       "revoke screens")
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("id", nargs="?", help="the screen id to revoke")
    p.add_argument("--name", default="screen", help="name of the new screen (add)")
    p.add_argument("--data-dir", type=Path, help="the appliance's data dir (holds admin.sock)")
    p.add_argument("--json", action="store_true", help="JSON output (add: {id, name, link, expires})")
    p.set_defaults(func=_screens)
    p = sub.add_parser("printers", help="on the device: allow a till's address to print (port 9100, TakePOS "
                       "connector), list or revoke them")
    p.add_argument("action", choices=["allow", "list", "revoke"])
    p.add_argument("target", nargs="?", metavar="ADDRESS[/PREFIX]|ID", help="allow: the till's address or "
                   "network; revoke: the till id")
    p.add_argument("--name", help="allow: a name for the till (default 'Till <address>')")
    p.add_argument("--data-dir", type=Path, help="the appliance's data dir (holds admin.sock)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_printers)
    p = sub.add_parser("status", help="on the device: health, pairing state and URLs")
    p.add_argument("--data-dir", type=Path, help="the appliance's data dir (holds admin.sock)")
    p.set_defaults(func=_status)

