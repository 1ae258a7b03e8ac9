"""`python -m bridge` is `cancel-bridge`."""

import sys

from bridge.cli import main

sys.exit(main())
