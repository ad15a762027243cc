"""The results store of ``bspm compare``: one SQLite file of finished runs, safe for several writing processes.

Each run is one row, keyed by :func:`run_key` (what was run: the entry's label, its settings,
the seed, the protocol and the dataset's digest), so that a run already in the store is never
redone and a killed comparison resumes where it stopped. The file is in WAL mode with a busy
timeout: two ``compare`` processes may write it at once, each write one short transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import DataError

STORE_FORMAT = 2
"""The layout of the ``runs`` table; a store of another format is refused."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER NOT NULL,
    record TEXT NOT NULL,
    finished TEXT NOT NULL
);
"""
_BUSY_MS = 120_000


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One finished run of ``bspm compare``.

    What ran: ``label`` (the entry), ``model``, ``kind`` (``"final"``: a leaderboard run, scored on validation and
    test; ``"trial"``: a point of the search, scored on validation only), ``seed``, ``settings`` (the model's),
    ``train`` (a trained model's ``[train]`` settings; empty otherwise), ``chosen_by``. On what: ``protocol``,
    ``dataset`` (with its digest). What it scored: ``validation``, ``test``. What it cost: ``fit_s`` (fitting, or
    training with its validations, plus the search for a final run), ``score_s`` (test scoring), ``peak_mib`` (peak
    resident memory during the run), ``search_s`` (the trials that chose a final run's settings). How it trained: ``training`` (epochs run, best epoch, seconds to it) and
    ``curve`` (per epoch: loss, and the validation metric where validated). Where: ``machine``, ``version``; and
    ``command``, which reproduces it alone.
    """

    label: str
    model: str
    kind: str
    seed: int
    settings: dict[str, Any]
    train: dict[str, Any]
    chosen_by: str
    protocol: dict[str, Any]
    dataset: dict[str, Any]
    validation: dict[str, float]
    test: dict[str, float]
    fit_s: float
    score_s: float
    search_s: float
    peak_mib: float
    training: dict[str, Any]
    curve: list[dict[str, Any]]
    machine: dict[str, Any]
    version: str
    command: str
    finished: str

    @property
    def key(self) -> str:
        return run_key(self.label, identity(self.kind, self.settings, self.train, self.chosen_by), self.seed,
                       self.protocol, self.dataset.get("digest", ""))


def identity(kind: str, settings: dict[str, Any], train: dict[str, Any], chosen_by: str) -> dict[str, Any]:
    """What a run is, besides its entry, seed, protocol and data: the ``what`` of :func:`run_key`."""
    return {"kind": kind, "settings": settings, "train": train, "chosen_by": chosen_by}


def run_key(label: str, what: dict[str, Any], seed: int, protocol: dict[str, Any], digest: str) -> str:
    """SHA-256 of what a run is: the same entry, settings (``what``), seed, protocol and data give the same key."""
    ident = {"label": label, "what": what, "seed": seed, "protocol": protocol, "digest": digest}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ResultsStore:
    """The runs of one comparison in the SQLite file ``path`` (created when missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise DataError(f"{self.path} is a folder, not a results store")
        try:
            with self._connect() as conn:
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(STORE_FORMAT),))
                found = conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.path} is not a bspm results store (SQLite): {err}") from None
        if found != str(STORE_FORMAT):
            raise DataError(f"{self.path} is a results store of format {found}; this bspm_jax reads {STORE_FORMAT}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        return conn

    def put(self, record: RunRecord, key: str | None = None) -> str:
        """Store ``record`` under ``key`` (default :attr:`RunRecord.key`), replacing a run with the same key, in one
        transaction; returns the key."""
        key = record.key if key is None else key
        row = (key, record.label, record.model, record.seed, json.dumps(dataclasses.asdict(record)),
               record.finished)
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)", row)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return key

    def set_meta(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` beside the runs (e.g. the suite's published figures)."""
        conn = self._connect()
        try:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
        finally:
            conn.close()

    def meta(self) -> dict[str, str]:
        """Everything kept beside the runs, ``format`` included."""
        conn = self._connect()
        try:
            return dict(conn.execute("SELECT name, value FROM meta").fetchall())
        finally:
            conn.close()

    def get(self, key: str) -> RunRecord | None:
        """The run stored under ``key``, or None."""
        conn = self._connect()
        try:
            row = conn.execute("SELECT record FROM runs WHERE key = ?", (key,)).fetchone()
        finally:
            conn.close()
        return None if row is None else self._record(row[0])

    def records(self) -> list[RunRecord]:
        """Every stored run (final runs and search trials), in the order they finished."""
        conn = self._connect()
        try:
            rows = conn.execute("SELECT record FROM runs ORDER BY finished, key").fetchall()
        finally:
            conn.close()
        return [self._record(r[0]) for r in rows]

    def _record(self, text: str) -> RunRecord:
        return _record(self.path, text)


def _record(path: Path, text: str) -> RunRecord:
    try:
        return RunRecord(**json.loads(text))
    except (json.JSONDecodeError, TypeError) as err:
        raise DataError(f"{path} holds a damaged run record: {err}") from None


def read_store(path: str | Path) -> tuple[dict[str, str], list[RunRecord]]:
    """The meta and runs of a store that nothing writes any more (a copy kept with results), opened read-only:
    nothing is written beside it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a results store file")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?immutable=1", uri=True)
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            rows = conn.execute("SELECT record FROM runs ORDER BY finished, key").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise DataError(f"{path} is not a bspm results store (SQLite): {err}") from None
    if meta.get("format") != str(STORE_FORMAT):
        raise DataError(f"{path} is a results store of format {meta.get('format')}; this bspm_jax reads {STORE_FORMAT}")
    return meta, [_record(path, r[0]) for r in rows]
