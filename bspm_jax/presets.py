"""The paper's configurations as named data (BSPM paper section 4.1.2, official README).

Each preset names a registered model and its settings; any setting can be overridden.
The official code switches some behaviour on the dataset's name (e.g. no ideal filter on
Amazon-book); here that is expressed in the preset's settings instead.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "gowalla-em": {
        "doc": "BSPM-EM on Gowalla: Euler heat blur T_b=1 (1 step), RK4 sharpening T_s=2.5 (1 step), "
        "ideal low-pass beta=0.2 with rank 448, early merge (Table 4: 0.1920 / 0.1597).",
        "model": "bspm",
        "settings": {"blur": "heat", "T_b": 1.0, "K_b": 1, "beta": 0.2, "rank": 448, "sharpen_solver": "rk4",
                     "T_s": 2.5, "K_s": 1, "merge": "early"},
    },
    "gowalla-lm": {
        "doc": "BSPM-LM on Gowalla: as gowalla-em with late merge (Table 4: 0.1901 / 0.1570).",
        "model": "bspm",
        "settings": {"blur": "heat", "T_b": 1.0, "K_b": 1, "beta": 0.2, "rank": 448, "sharpen_solver": "rk4",
                     "T_s": 2.5, "K_s": 1, "merge": "late"},
    },
    "yelp2018-em": {
        "doc": "BSPM-EM on Yelp2018: Euler sharpening T_s=1.2 (1 step), beta=0.3, rank 384, early merge, "
        "t-point combination (official README).",
        "model": "bspm",
        "settings": {"blur": "heat", "beta": 0.3, "rank": 384, "sharpen_solver": "euler", "T_s": 1.2, "K_s": 1,
                     "merge": "early", "t_point": True},
    },
    "amazon-book-lm": {
        "doc": "BSPM-LM on Amazon-book: RK4 sharpening T_s=2.2 in 2 steps, late merge, no ideal low-pass "
        "filter (the official code skips it on this dataset).",
        "model": "bspm",
        "settings": {"blur": "heat", "beta": 0.0, "sharpen_solver": "rk4", "T_s": 2.2, "K_s": 2, "merge": "late"},
    },
    "gf-cf": {
        "doc": "GF-CF as in its official code: R (P~ + 0.3 V^-1/2 Vbar Vbar^T V^1/2), rank 256.",
        "model": "gf-cf",
        "settings": {},
    },
    "amazon-book-gf-cf": {
        "doc": "GF-CF on Amazon-book as in its official code: R P~ only (no ideal low-pass filter).",
        "model": "blur-heat",
        "settings": {},
    },
    "gowalla-lgcn-ide": {
        "doc": "LGCN-IDE on Gowalla as in the official code: two propagation layers.",
        "model": "lgcn-ide",
        "settings": {"layers": 2},
    },
}


def get_preset(name: str) -> dict[str, Any]:
    """The preset registered as ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None
