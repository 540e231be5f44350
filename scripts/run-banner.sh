#!/bin/bash
# Printed by `make run` before the appliance starts: where to see the screen, how to pair and send.
listen=$1 api=$2 data=$3 printer=$4
echo -e "$(cat <<MSG

  eTicket appliance: POS API https://$api (pinned certificate), downloads http://$listen\n  State in $data/; mDNS on loopback only.
  The screen:  a window if you have a display; otherwise $data/screen.png, redrawn on every change.
  In another terminal:
    export ETICKET_MDNS_INTERFACES=127.0.0.1     # keep the POS commands' mDNS on loopback too
    .venv/bin/eticket discover
    .venv/bin/eticket pair --code <code on the screen> --address $api
    .venv/bin/eticket send samples/receipt.pdf --total 12.50 --currency EUR   # or any receipt PDF
    .venv/bin/eticket clear                       # back to idle
  On the device side: .venv/bin/eticket pairings list|revoke ID|open --data-dir $data
  As a receipt printer: ESC/POS on raw TCP $printer, or TakePOS's connector http://$listen/printer/index.php:
    curl --data-urlencode "invoice=\$(base64 -w0 samples/receipt.escpos)" http://$listen/printer/index.php
    (while pairing is open the first job binds its till; else: .venv/bin/eticket printers allow 127.0.0.1 --data-dir $data)
  Stop with Ctrl-C.

MSG
)"
