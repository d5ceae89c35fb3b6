"""Entry point of `python -m helpers`."""

import sys

from helpers.cli import main

sys.exit(main())
