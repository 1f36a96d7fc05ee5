"""`python -m attnclaims`: the `attnclaims` command (attnclaims.cli)."""

import sys

from attnclaims.cli import main

sys.exit(main())
