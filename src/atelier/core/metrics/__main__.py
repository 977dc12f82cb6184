"""``python -m atelier.core.metrics``: the command line of :mod:`atelier.core.metrics.cli`."""

import sys

from atelier.core.metrics.cli import main

if __name__ == "__main__":
    sys.exit(main())
