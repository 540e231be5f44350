"""A/B system updates on the device with RAUC (issue 12, docs/fleet.md §11): ``eticket update status | install |
rollback | commit``.

- :mod:`.rauc`: the ``rauc`` command line (status, info, install, mark-*); RAUC does the updating.
- :mod:`.state`: ``/var/lib/eticket-update/state.json`` (atomic), the running image's version.
- :mod:`.command`: status, install, rollback and their exit codes.
- :mod:`.gate`: ``commit``, the health gate of a new slot.
- :mod:`.cli`: the ``eticket update`` subcommand.
"""
