"""How much memory a backend has free, and refusing allocations that cannot fit."""

from __future__ import annotations

import os
import jax

from ..errors import ResourceError


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


def human_bytes(n_bytes: float) -> str:
    """Bytes as a short string in B, KiB, MiB, GiB or TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024:
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def require_bytes(needed: int, what: str, advice: str, device: jax.Device | None = None) -> None:
    """Raise ResourceError before allocating ``needed`` bytes that the device lacks."""
    free = available_bytes(device)
    if needed > free:
        raise ResourceError(
            f"{what} needs {human_bytes(needed)} but only {human_bytes(free)} is available; {advice}"
        )
