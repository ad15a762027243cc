"""How much memory a backend has free, and refusing allocations that cannot fit."""

from __future__ import annotations

import os

import jax

from .errors import ResourceError


def host_available_bytes() -> int:
    """Host memory available to new allocations (MemAvailable), or total RAM as fallback."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_bytes(device: jax.Device | None = None) -> int:
    """Free memory of ``device`` (default: the first JAX device); host memory on CPU."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available_bytes()


def gib(n_bytes: float) -> str:
    """Bytes as a short GiB string."""
    return f"{n_bytes / 2**30:.2f} GiB"


def require_bytes(needed: int, what: str, advice: str, device: jax.Device | None = None) -> None:
    """Raise ResourceError before allocating ``needed`` bytes that the device lacks."""
    free = available_bytes(device)
    if needed > free:
        raise ResourceError(
            f"{what} needs {gib(needed)} but only {gib(free)} is available; {advice}"
        )
