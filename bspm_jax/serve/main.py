"""``bspm serve``: load a saved model, then answer on HTTP with uvicorn until stopped."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .app import Limits, create_app
from .model import ServedModel, load_served


def read_token(path: str | Path) -> str:
    """The bearer token in file ``path`` (one line; surrounding space ignored)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the token file {path}: {getattr(err, 'strerror', None) or err}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"the token in {path} must be one word of at least 16 characters")
    return token


def serve(load: str | Path, host: str = "127.0.0.1", port: int = 8000, token_file: str | Path | None = None,
          limits: Limits | None = None, max_wait: float = 0.002, log_level: str = "warning",
          ready: Callable[[ServedModel], None] | None = None) -> None:
    """Serve the model saved in folder ``load`` on ``host:port`` until interrupted (SIGINT, SIGTERM); SIGHUP and
    ``POST /v1/reload`` load the folder again. ``ready`` is called with the loaded model before the server binds."""
    import uvicorn

    limits = limits or Limits()
    token = None if token_file is None else read_token(token_file)

    def fresh() -> ServedModel:
        return _settled(load_served(load, max_k=limits.max_k))

    served = fresh()
    if ready is not None:
        ready(served)
    app = create_app(served, load=fresh, token=token, limits=limits, max_wait=max_wait)
    # idle keep-alive connections are kept 75 s (nginx's default): longer than the clients' and proxies' own idle
    # times, so that a client never sends a request on a connection the server is closing at that moment
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=10,
                timeout_keep_alive=75)


def _settled(served: ServedModel) -> ServedModel:
    """``served``, with every object alive now (the model, the libraries) moved out of the cyclic garbage collector's
    scans: its full collections then take milliseconds, not the ~120 ms that paused every request (measured on
    Gowalla, LOG 2026-12-08). Objects are still freed when no longer referenced (a replaced model's arrays are)."""
    gc.collect()
    gc.freeze()
    return served
