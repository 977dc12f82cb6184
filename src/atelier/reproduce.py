"""``python -m atelier.reproduce RUN_ID``: see :mod:`atelier.tracking.reproduce`."""

import sys

from atelier.tracking.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
