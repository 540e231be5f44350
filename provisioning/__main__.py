"""``python -m provisioning ACTION …``: see :mod:`provisioning.cli`."""

import sys

from .cli import main

sys.exit(main())
