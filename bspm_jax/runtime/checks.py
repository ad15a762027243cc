"""Checks of numeric settings, each raising one :class:`ConfigError` that names the setting and the bound."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..errors import ConfigError


def check_integer(name: str, value: Any, low: int) -> None:
    """``value`` is an integer (not a bool) >= ``low``."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def check_number(name: str, value: Any, low: float, high: float = math.inf, strict_low: bool = False) -> None:
    """``value`` is a finite real (not a bool) >= ``low`` (> with ``strict_low``) and <= ``high``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict_low else value >= low) and value <= high
    if not ok:
        bounds = f"{'>' if strict_low else '>='} {low}" + (f" and <= {high}" if high != math.inf else "")
        raise ConfigError(f"{name} must be a finite number {bounds}, got {value!r}")
