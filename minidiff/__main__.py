"""`python -m minidiff ...`: the command line (`minidiff.cli`)."""

import sys

from minidiff.cli import main

if __name__ == "__main__":
    sys.exit(main())
