"""``python -m gradstep``: the command line."""

import sys

from gradstep.cli import main

sys.exit(main())
