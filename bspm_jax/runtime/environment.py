"""What the run executed on: the ``environment`` block of the JSON output."""

from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Any

import jax

from . import native


def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(kernel: str = "auto") -> dict[str, Any]:
    """JAX version, backend, device, Python version, CPU count and model, and the native kernel's paths.

    ``kernel`` is the path that the setting ``kernel`` runs here (``jax``: the pure-JAX
    fallback); ``kernel_paths`` the native paths this CPU runs; ``kernel_note`` why there are none.
    """
    device = jax.devices()[0]
    auto = native.select(kernel)
    extra = {} if native.available() else {"kernel_note": native.unavailable_reason()}
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "process_count": jax.process_count(),
        "kernel": native.JAX if auto is None else auto,
        "kernel_paths": list(native.isa_paths()),
        **extra,
    }


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Start :func:`window_peak_rss_bytes`'s window here (Linux: ``/proc/self/clear_refs``); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def window_peak_rss_bytes() -> int:
    """Peak resident memory since :func:`reset_peak_rss` (``VmHWM``), or of the whole process where not on Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def memory_info() -> dict[str, Any]:
    """The ``memory`` block of the JSON output: host peak RSS, and device peak when known."""
    out: dict[str, Any] = {"peak_rss_bytes": peak_rss_bytes()}
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out
