"""``python -m plugins.dci``: see :mod:`plugins.dci.cli`."""

import sys

from plugins.dci.cli import main

sys.exit(main())
