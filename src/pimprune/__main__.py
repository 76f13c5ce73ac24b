"""``python -m pimprune`` (also what ``torchrun -m pimprune`` runs)."""

import sys

from pimprune.cli import main

if __name__ == "__main__":
    sys.exit(main())
