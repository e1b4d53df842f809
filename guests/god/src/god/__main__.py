"""`python -m god` is the same as the `god` console script."""

import sys

from god.cli import main

sys.exit(main())
