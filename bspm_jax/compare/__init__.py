"""``bspm compare``: models on one dataset under one protocol, their runs kept in a results store."""

from .store import STORE_FORMAT, ResultsStore, RunRecord, identity, read_store, run_key

__all__ = ["STORE_FORMAT", "ResultsStore", "RunRecord", "identity", "read_store", "run_key"]
