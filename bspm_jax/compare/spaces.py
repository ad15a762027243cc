"""The small default search spaces ``bspm compare`` chooses settings from on validation, by registered model name.

Work in progress (issue 36): training-free models only; trained models (``lr``, ``reg``) run as configured.
Settings that depend on the data's size (SVD ranks) are left at the configured value.
"""

from __future__ import annotations

from typing import Any

SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "bspm": {"T_s": [1.5, 2.5, 3.5], "beta": [0.0, 0.2]},
    "gf-cf": {"gfcf_beta": [0.1, 0.3, 0.5]},
    "blur-heat": {"T_b": [1.0, 2.0, 3.0]},
    "blur-ideal": {"T_b": [1.0, 2.0, 3.0]},
    "blur-gfcf": {"T_b": [1.0, 2.0, 3.0]},
    "chebycf": {"phi": [1.0, 1.5, 2.0], "beta": [0.2, 0.4]},
    "turbo-cf": {"alpha": [0.4, 0.6, 0.8], "power": [0.5, 0.7]},
}
"""Each model's grid (at most 6 points); a model not listed has nothing chosen on validation."""
