"""What many tests share: the repository's folders, and the shipped sample loaded once."""

from __future__ import annotations

import functools
from pathlib import Path

from bspm_jax import Dataset, load_sample

REPO = Path(__file__).resolve().parents[1]
"""The repository's root."""
TESTS = REPO / "tests"
"""The tests' root (helpers, oracles and the training script the resume tests kill)."""
SHARED_DATA = REPO.parent / "shared" / "data"
"""The real data sets beside the checkout (tests that need one skip without it)."""


@functools.cache
def sample() -> Dataset:
    """The Gowalla sample shipped in the package, loaded once for all tests (treat it as read-only)."""
    return load_sample()
