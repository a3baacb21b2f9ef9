"""``python -m recoil`` is the ``recoil`` command."""

import sys

from recoil.cli import main

sys.exit(main())
