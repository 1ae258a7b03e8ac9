"""`python -m bridge` is `cancel-bridge`."""

import sys

from bridge.cli.main import main

sys.exit(main())
