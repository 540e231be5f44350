"""The device as a till's receipt printer: print jobs in ESC/POS become receipts like any other.

Two intakes, as Dolibarr's TakePOS prints (``../shared/clients/README.md``, ``docs/protocol.md`` §12):

* raw TCP, a network receipt printer's port 9100 (``printer_listen``; :mod:`.listener`): one job per
  connection, status queries answered as a healthy printer would;
* the TakePOS connector, ``POST /printer/index.php`` with ``invoice=<ESC/POS in base64url>`` and the customer
  display ``GET /display/index.php?text=`` (:mod:`appliance.web.connector`).

Only allowed tills print (:mod:`.tills`): a printer port has no authentication, so the device trusts
addresses the shop allowed (``eticket printers allow``) or bound by printing while pairing was open. A job is
interpreted (:mod:`appliance.escpos.interpreter`) and rendered to a PDF (:mod:`appliance.escpos.render`) in a
worker process under a memory and time limit (:mod:`.worker`), then stored and shown exactly like a receipt
from the HTTPS API (:meth:`appliance.service.Appliance.async_accept_ticket`).
"""
