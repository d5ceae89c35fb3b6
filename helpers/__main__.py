"""Entry point of `python -m helpers`."""

import sys

from helpers.machinery.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything imports TensorFlow

from helpers.machinery.cli import main  # noqa: E402  (after the quieting, before TensorFlow is imported)

sys.exit(main())
