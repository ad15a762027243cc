"""Benchmark harnesses (run as ``python -m benchmarks.<name>``)."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path


def machine() -> dict[str, object]:
    """Where a benchmark ran: host, processor, CPU count, JAX version and backend (written with every result)."""
    import os

    import jax

    return {"node": platform.node(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend()}


def bspm_process(*args: str) -> float:
    """Seconds of one fresh ``bspm ARGS --quiet`` process (wall clock: start-up and loading count); exits on failure."""
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bspm_jax", *args, "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - t0


def save_results(kind: str, out: str | None, result: object) -> Path:
    """Write ``result`` as JSON (atomically) to :func:`results_path`; returns the path."""
    from bspm_jax.runtime.io import write_json_atomic

    path = results_path(kind, out)
    write_json_atomic(path, result)
    return path


def results_path(kind: str, out: str | None = None) -> Path:
    """``out``, or ``benchmarks/results/<kind>-<host>-<date>T<HHMM>.json``; its folder exists."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M")
    path = Path(out or Path(__file__).parent / "results" / f"{kind}-{platform.node()}-{stamp}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
