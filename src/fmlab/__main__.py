"""``python -m fmlab`` (also what ``torchrun -m fmlab`` runs)."""

import sys

from fmlab.cli.main import main

sys.exit(main())
