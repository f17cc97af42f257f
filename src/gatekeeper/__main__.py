"""`python -m gatekeeper` = the `gatekeeper` command."""

import sys

from gatekeeper.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
