"""``python -m bspm_jax`` is the ``bspm`` command."""

import sys

from .cli import main

sys.exit(main())
