"""``python -m ilif`` (and ``torchrun -m ilif``) runs the command line."""

import sys

from ilif.cli import main

sys.exit(main())
