"""``python -m flowblock`` is the ``flowblock`` command."""

import sys

from flowblock.cli import main

sys.exit(main())
