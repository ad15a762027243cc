"""``bspm serve``: recommendations over HTTP from a saved model (the ``[serve]`` extra: FastAPI, uvicorn,
prometheus-client)."""

from .app import Limits, create_app
from .main import serve
from .model import PAD_SIZES, ServedModel, load_served

__all__ = ["PAD_SIZES", "Limits", "ServedModel", "create_app", "load_served", "serve"]
