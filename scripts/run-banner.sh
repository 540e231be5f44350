#!/bin/bash
# Printed by `make run` before the appliance starts: where to see the screen, how to pair and send.
listen=$1 data=$2
cat <<MSG

  eTicket appliance on http://$listen  (state in $data/; mDNS on loopback only)
  The screen:  a window if you have a display; otherwise $data/screen.png, redrawn on every change.
  In another terminal:
    export ETICKET_MDNS_INTERFACES=127.0.0.1     # keep the POS commands' mDNS on loopback too
    .venv/bin/eticket discover
    .venv/bin/eticket pair --code <code on the screen> --address $listen
    .venv/bin/eticket send ../shared/samples/pdf/mustang_EN16931_Einfach.pdf --total 12.50 --currency EUR
  Stop with Ctrl-C.

MSG
