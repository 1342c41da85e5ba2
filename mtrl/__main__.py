"""``python -m mtrl``: the same command line as ``mtrl``, for environments whose scripts are not on PATH."""

import sys

from mtrl.cli import main

sys.exit(main())
