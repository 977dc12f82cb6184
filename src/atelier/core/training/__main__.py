"""``python -m atelier.core.training`` and ``torchrun -m atelier.core.training``: see ``cli``."""

from atelier.core.training.cli import main

if __name__ == "__main__":
    main()
