"""``python -m speedster_dist.cli``: the same as the ``speedster-dist`` command."""

import sys

from speedster_dist.cli import main

sys.exit(main())
