"""The appliance's HTTP face: POS API, screen stream and customer downloads (``app.create_app``).

Nothing is imported here, so that low-level modules of this package (``framing``, ``logs``, ``common``) can
be used by :mod:`appliance.admission` and the relay without pulling in the whole application.
"""
