"""`python -m engine chat`."""

import sys

from engine.cli import main

sys.exit(main())
