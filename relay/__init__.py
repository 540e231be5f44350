"""eTicket relay: stores receipts sealed by devices and serves them to phones on the internet.

The relay never holds a receipt in the clear: devices seal each PDF with a key derived from the receipt's
capability token and upload it under another value derived from the token (:mod:`relay.crypto`). Only a
phone presenting the token (``GET /r/{token}``) lets the relay derive the key and open the receipt.
"""
