"""``eticket fleet``: the fleet owner's side of A/B system updates (keys, inventory, waves over SSH).

It runs on the operator's machine, never on a device; on a device the matching command is ``eticket update``.
"""
