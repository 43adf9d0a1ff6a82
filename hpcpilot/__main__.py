"""``python -m hpcpilot``: the entry point every rank runs."""

import sys

from hpcpilot.cli import main

if __name__ == "__main__":
    sys.exit(main())
