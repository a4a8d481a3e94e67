"""`python -m broker.cli ...` is the `logstore` command."""

import sys

from . import main

sys.exit(main())
