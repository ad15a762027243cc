"""Every function and class of ``bspm_jax`` imported by the tests has its type hints checked at run time:
shapes and dtypes of the jaxtyping annotations included (jaxtyping's import hook with beartype)."""

import os
import sys
import tempfile
import warnings
from pathlib import Path

import jaxtyping

sys.path.insert(0, str(Path(__file__).parent))
# The CLI keeps spectra on disk: the tests' go to a folder of their own, never the user's cache.
os.environ["BSPM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bspm-test-spectra-")
warnings.filterwarnings("ignore", message=".*deprecated by PEP 585.*")
_HOOK = jaxtyping.install_import_hook("bspm_jax", "typecheck.typecheck")
