#!/bin/bash
# Printed by `make run` before the appliance starts: where to see the screen, how to pair and send.
listen=$1 data=$2
cat <<MSG

  eTicket appliance on http://$listen  (data: $data, mDNS on loopback only)
  The screen:  a window if you have a display; otherwise $data/screen.png, refreshed on every change,
               or:  .venv/bin/eticket kiosk --data-dir $data --snapshot screen.png
  Pair a POS:  .venv/bin/eticket discover --mdns-interfaces 127.0.0.1
               .venv/bin/eticket pair --code <code on the screen> --address $listen
  Send:        .venv/bin/eticket send ../shared/samples/pdf/escpos-php_example-document.pdf --total 12.50 --currency EUR
  Stop:        Ctrl-C

MSG
