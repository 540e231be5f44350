"""The small core every part stands on (``appliance``, ``kiosk``, ``relay``, ``provisioning`` and the POS client):
helpers they share, with no import of any part. Today: screen text in the shop's language (``i18n``) and money
formatting (``money``). Nothing here imports upward."""
