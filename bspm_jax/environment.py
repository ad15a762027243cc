"""What the run executed on: the ``environment`` block of the JSON output."""

from __future__ import annotations

import os
import platform
from typing import Any

import jax


def environment_info() -> dict[str, Any]:
    """JAX version, backend, device, Python version and CPU count."""
    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
