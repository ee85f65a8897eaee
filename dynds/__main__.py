"""`python -m dynds`: the `dynds` command."""

import sys

from dynds.cli import main

sys.exit(main())
