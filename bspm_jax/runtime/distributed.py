"""Runs across several processes (one per host, or several on one) with JAX's distributed runtime.

Every process loads the same data and fits the same model (BSPM's fit is deterministic),
scores its share of the user batches on its local devices, and the shares are gathered
with JAX's own collectives (``jax.experimental.multihost_utils``, Gloo on the CPU), so
every process ends with the whole ranking. Start one process per host with the same
coordinator address and process count and its own process id, before any JAX work.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from ..errors import ConfigError

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")


def check_address(address: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) with a port in 1..65535, or a ConfigError."""
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ConfigError(f"coordinator must be HOST:PORT with a port in 1..65535, got {address!r}")
    return address


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Process 0 must be able to serve on ``address``; the others must reach it within ``timeout_s``.

    XLA ends the process (no exception) when the coordinator does not answer, so these two
    mistakes are caught before it is asked.
    """
    host, port = _split(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=min(5.0, timeout_s)).close()
            return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ConfigError(f"no coordinator answered at {address} within {timeout_s:g} s ({err.strerror or err}): "
                                  "start process 0 there first, or check the address") from None
            time.sleep(0.2)


def _check_free(address: str) -> None:
    host, port = _split(address)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        raise ConfigError(f"process 0 cannot serve the coordinator on {address}: {err.strerror or err}") from None


def initialize(coordinator: str, num_processes: int, process_id: int, timeout_s: int = 300) -> None:
    """Join the ``num_processes`` processes coordinated at ``coordinator`` (process 0 serves it).

    Must run before JAX computes anything in this process. On the CPU the collectives are
    Gloo's. A coordinator address that process 0 cannot serve on, or that another process
    cannot reach within ``timeout_s``, is a ConfigError; a process that never joins makes
    XLA end the others after ``timeout_s``.
    """
    check_address(coordinator)
    for name, value, low in (("num_processes", num_processes, 1), ("timeout_s", timeout_s, 1)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(process_id, int) and not isinstance(process_id, bool) and 0 <= process_id < num_processes):
        raise ConfigError(f"process_id must be in 0..{num_processes - 1}, got {process_id!r}")
    if num_processes > 1:
        (_check_free if process_id == 0 else lambda a: _check_reachable(a, timeout_s))(coordinator)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_s)
    except RuntimeError as err:  # a JAX backend already started, or no coordinator answered
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"could not join {num_processes} processes at {coordinator} as process {process_id}: {first}") from None


def process() -> tuple[int, int]:
    """(this process's index, the process count): (0, 1) outside a multi-process run."""
    return jax.process_index(), jax.process_count()


def share(n: int) -> tuple[int, int, int]:
    """(this process's index, the process count, the items per process) for ``n`` items dealt in turn."""
    count = jax.process_count()
    return jax.process_index(), count, -(-n // count)


def gather(tree: Any) -> Any:
    """Every process's ``tree`` of equally shaped host arrays, stacked on a new leading axis."""
    if jax.process_count() == 1:
        return jax.tree.map(lambda a: np.asarray(a)[None], tree)
    from jax.experimental import multihost_utils

    with _stdout_to_stderr():  # Gloo's C++ writes "[Gloo] Rank ... connected" to standard output
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree))


def barrier(name: str) -> None:
    """Wait until every process of a multi-process run reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    with _stdout_to_stderr():
        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 to descriptor 2, for the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
