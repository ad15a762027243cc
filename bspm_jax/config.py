"""Experiment configuration: TOML files, presets shipped as such files, ``key=value`` overrides.

A configuration file has up to six tables and a description::

    description = "BSPM-EM on Gowalla"
    [model]        # name = a registered model; every other key is one of its settings
    name = "bspm"
    T_s = 2.5
    [data]         # path (LightGCN folder or pairs file; relative to the file), pairs options,
    path = "gowalla"  # and validation = a share of train carved as the validation split (validation_seed)
    [evaluation]   # cut-offs and users per batch
    k = [10, 20]
    batch_size = 1024
    [tune]         # bspm tune: selection metric, validation split, and the grid
    metric = "recall@20"
    [tune.grid]
    T_s = [1.5, 2.0]
    [train]        # trained models (bspm_jax.training.TrainSettings checks the values)
    epochs = 100
    [cache]        # spectra kept on disk ($BSPM_CACHE_DIR) and the folder's size limit
    spectra = true
    max_gib = 4.0

Overrides name a key as ``table.key`` (``evaluation.batch_size=2048``); a bare key is a
model setting (``T_s=3``). Values are read as TOML values (``3``, ``true``, ``"rk4"``,
``[1, 2]``), and as text when they do not parse.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

TABLES: dict[str, tuple[str, ...] | None] = {
    "model": None,  # model settings are checked by the model itself
    "data": ("path", "user_col", "item_col", "time_col", "weight_col", "min_weight", "sep", "test", "split", "holdout",
             "seed", "cut", "last_n", "validation", "validation_seed"),
    "evaluation": ("k", "batch_size", "devices", "refit_with_valid"),
    "tune": ("metric", "validation", "seed", "grid", "method", "steps", "lr", "batch_users", "bands", "eval_every",
             "eval_users", "width", "frozen"),
    "train": ("epochs", "lr", "batch_size", "eval_every", "patience", "metric", "seed", "checkpoint_every", "restarts",
              "restart_epochs"),
    "cache": ("spectra", "max_gib"),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"name": "bspm"},
    "data": {},
    "evaluation": {"k": [10, 20], "batch_size": 1024},
    "tune": {"metric": "recall@20", "validation": 0.2, "seed": 0, "grid": {}, "method": "grid"},
    "train": {"epochs": 100, "lr": 1e-3, "batch_size": 1024, "eval_every": 1, "patience": 5,
              "metric": "recall@20", "seed": 0, "checkpoint_every": 1, "restarts": 1, "restart_epochs": 100},
    "cache": {"spectra": True, "max_gib": 4.0},
}


@dataclasses.dataclass(frozen=True)
class Config:
    """An experiment's settings as nested tables (``model``, ``data``, ``evaluation``, ``tune``, ``train``)."""

    tables: Mapping[str, Mapping[str, Any]]
    description: str = ""

    def __post_init__(self) -> None:
        _check(self.tables)

    def __getitem__(self, table: str) -> dict[str, Any]:
        return dict(self.tables.get(table, {}))

    @property
    def model_name(self) -> str:
        return self.tables.get("model", {}).get("name", DEFAULTS["model"]["name"])

    @property
    def model_settings(self) -> dict[str, Any]:
        """The model's settings, without its name."""
        return {k: v for k, v in self.tables.get("model", {}).items() if k != "name"}

    def with_values(self, values: Mapping[str, Any]) -> Config:
        """A copy with ``table.key`` (or bare model-setting) keys set to the given values."""
        tables = copy.deepcopy({t: dict(v) for t, v in self.tables.items()})
        for key, value in values.items():
            table, _, name = key.rpartition(".") if "." in key else ("model", "", key)
            if table == "tune.grid":
                tables.setdefault("tune", {}).setdefault("grid", {})[name] = value
                continue
            if table not in TABLES:
                raise ConfigError(f"unknown config table {table!r} in {key!r}; tables: {', '.join(TABLES)}")
            if table == "model" and name == "name" and value != tables.get("model", {}).get("name"):
                tables["model"] = {}  # a different model does not inherit the old one's settings
            if table == "model" and "model" not in tables:
                tables["model"] = {"name": DEFAULTS["model"]["name"]}  # a setting of the default model
            tables.setdefault(table, {})[name] = value
        return Config(tables, self.description)

    def with_overrides(self, overrides: Iterable[str]) -> Config:
        """A copy with ``key=value`` texts applied in order."""
        return self.with_values(dict(parse_override(text) for text in overrides))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for JSON output and :func:`dumps`)."""
        out: dict[str, Any] = {"description": self.description} if self.description else {}
        out.update(copy.deepcopy({t: dict(v) for t, v in self.tables.items()}))
        return out


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as a TOML value, else as text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"an override must be key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,...`` (or ``key=[v1, v2]``) as a grid axis; each value read as in :func:`parse_override`."""
    key, value = parse_override(text)
    if isinstance(value, list):
        return key, value
    raw = text.partition("=")[2]
    values = [parse_override(f"v={item}")[1] for item in raw.split(",") if item.strip()]
    if not values:
        raise ConfigError(f"--grid expects key=v1,v2,..., got {text!r}")
    return key, values


def config_from_dict(raw: Mapping[str, Any], base: Path | None = None, where: str = "config") -> Config:
    """A Config from parsed TOML; a relative ``data.path`` is taken relative to ``base``."""
    raw = dict(raw)
    description = raw.pop("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be text")
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise ConfigError(f"{where}: unknown table or key {', '.join(unknown)}; tables: {', '.join(TABLES)}")
    tables: dict[str, dict[str, Any]] = {}
    for table, body in raw.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {table} must be a table ([{table}])")
        tables[table] = dict(body)
    path = tables.get("data", {}).get("path")
    if base is not None and isinstance(path, str) and not Path(path).is_absolute():
        tables["data"]["path"] = str(base / path)
    try:
        return Config(tables, description)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def load_config(path: str | Path) -> Config:
    """Read a TOML configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such config file: {path}")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    return config_from_dict(raw, path.resolve().parent, str(path))


PRESET_ALIASES: dict[str, str] = {
    "amazon-book-lm": "amazon-book-bspm-lm",
    "gf-cf": "gowalla-gf-cf",
    "gowalla-best": "gowalla-ensemble-best",
    "gowalla-em": "gowalla-bspm-em",
    "gowalla-lm": "gowalla-bspm-lm",
    "gowalla-tune": "gowalla-bspm-tune",
    "gowalla-tuned-chebycf": "gowalla-chebycf-tuned",
    "ml1m-best": "ml1m-chebycf-best",
    "yelp2018-em": "yelp2018-bspm-em",
}
"""Earlier names of presets (``<dataset>-<model>[-<variant>]`` now), kept working for scripts that use them."""


def preset_names() -> list[str]:
    """Names of the configurations shipped with the package (``bspm_jax/configs/*.toml``): ``<dataset>-<model>[-<variant>]``."""
    folder = resources.files("bspm_jax") / "configs"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_name(name: str) -> str:
    """The preset's name, an earlier name (:data:`PRESET_ALIASES`) resolved; unknown names are refused."""
    names = preset_names()
    canonical = PRESET_ALIASES.get(name, name)
    if canonical not in names:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names)}")
    return canonical


def preset_text(name: str) -> str:
    """The TOML text of the shipped configuration ``name`` (or an earlier name of it)."""
    return (resources.files("bspm_jax") / "configs" / f"{preset_name(name)}.toml").read_text(encoding="utf-8")


def get_preset(name: str) -> Config:
    """The shipped configuration ``name`` (e.g. ``gowalla-bspm-em``, or its earlier name ``gowalla-bspm-em``)."""
    return config_from_dict(tomllib.loads(preset_text(name)), None, f"preset {preset_name(name)}")


def presets() -> list[dict[str, Any]]:
    """Every shipped preset: its name, the model it builds, its earlier names and its description."""
    out = []
    for name in preset_names():
        raw = tomllib.loads(preset_text(name))
        out.append({
            "name": name,
            "model": raw.get("model", {}).get("name", DEFAULTS["model"]["name"]),
            "aliases": sorted(old for old, new in PRESET_ALIASES.items() if new == name),
            "description": raw.get("description", ""),
        })
    return out


def resolve(
    config: str | Path | None = None, preset: str | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Defaults, then a preset or a config file, then ``key=value`` overrides."""
    if config is not None and preset is not None:
        raise ConfigError("give either --config or --preset, not both")
    base = get_preset(preset) if preset else load_config(config) if config else Config({})
    return base.with_overrides(overrides)


def effective(config: Config, model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in; ``model`` holds every setting of the built model."""
    out = config.to_dict()
    for table, defaults in DEFAULTS.items():
        if table in out or table in ("data", "evaluation"):
            out[table] = {**copy.deepcopy(defaults), **out.get(table, {})}
    out["model"] = {"name": config.model_name, **model_config}
    return out


def dumps(config: Mapping[str, Any]) -> str:
    """TOML text of a nested dict of tables (scalars, lists, one level of sub-tables)."""
    lines: list[str] = []
    top = {k: v for k, v in config.items() if not isinstance(v, Mapping)}
    lines += [f"{k} = {_value(v)}" for k, v in top.items()]

    def table(name: str, body: Mapping[str, Any]) -> None:
        lines.extend(["", f"[{name}]"])
        lines.extend(f"{k} = {_value(v)}" for k, v in body.items() if not isinstance(v, Mapping) and v is not None)
        for k, v in body.items():
            if isinstance(v, Mapping) and v:
                table(f"{name}.{k}", v)

    for name, body in config.items():
        if isinstance(body, Mapping) and body:
            table(name, body)
    return "\n".join(lines).lstrip("\n") + "\n"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        v = float(v)
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):  # a TOML basic string: escape quote, backslash and control characters
        return '"' + "".join(c if c not in '"\\' and " " <= c != "\x7f" else f"\\u{ord(c):04x}" for c in v) + '"'

    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):  # an inline table, e.g. an ensemble's member
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise ConfigError(f"cannot write {v!r} to a TOML config")


def _key(k: str) -> str:
    """A TOML key: bare when it can be, else quoted."""
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _value(k)


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _check(tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Structural checks; model settings are checked when the model is built."""
    for table, body in tables.items():
        if table not in TABLES:
            raise ConfigError(f"unknown config table {table!r}; tables: {', '.join(TABLES)}")
        allowed = TABLES[table]
        unknown = sorted(set(body) - set(allowed)) if allowed is not None else []
        if unknown:
            raise ConfigError(f"unknown key {', '.join(unknown)} in [{table}]; keys: {', '.join(allowed or ())}")
    name = tables.get("model", {}).get("name", DEFAULTS["model"]["name"])
    if "model" in tables and "name" not in tables["model"]:
        raise ConfigError("[model] needs a name (e.g. name = \"bspm\")")
    if not isinstance(name, str):
        raise ConfigError(f"model name must be text, got {name!r}")
    ev = tables.get("evaluation", {})
    ks = ev.get("k", [10, 20])
    if not (isinstance(ks, list) and ks and all(_is_int(k, 1) for k in ks)):
        raise ConfigError(f"evaluation.k (the cut-offs K) must be a list of integers >= 1, got {ks!r}")
    if not (_is_int(ev.get("batch_size", 1), 1) or ev["batch_size"] == "auto"):
        raise ConfigError(f"evaluation.batch_size must be an integer >= 1 or \"auto\", got {ev['batch_size']!r}")
    devices = ev.get("devices", 1)
    if not (_is_int(devices, 1) or devices == "all"):
        raise ConfigError(f"evaluation.devices must be an integer >= 1 or \"all\", got {devices!r}")
    if not isinstance(ev.get("refit_with_valid", False), bool):
        raise ConfigError(f"evaluation.refit_with_valid must be true or false, got {ev['refit_with_valid']!r}")
    cache = tables.get("cache", {})
    if not isinstance(cache.get("spectra", True), bool):
        raise ConfigError(f"cache.spectra must be true or false, got {cache['spectra']!r}")
    if "max_gib" in cache and not (isinstance(cache["max_gib"], numbers.Real) and not isinstance(cache["max_gib"], bool)
                                   and cache["max_gib"] > 0):
        raise ConfigError(f"cache.max_gib (the spectrum cache's size limit) must be a number > 0, got {cache['max_gib']!r}")
    data = tables.get("data", {})
    if "path" in data and not isinstance(data["path"], str):
        raise ConfigError(f"data.path must be text, got {data['path']!r}")
    tune = tables.get("tune", {})
    if "metric" in tune and not (isinstance(tune["metric"], str) and "@" in tune["metric"]):
        raise ConfigError(f"tune.metric must look like recall@20 or ndcg@20, got {tune['metric']!r}")
    if "validation" in tune:
        v = tune["validation"]
        if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and 0.0 < v < 1.0):
            raise ConfigError(f"tune.validation must be a share in (0, 1), got {v!r}")
    if "seed" in tune and not _is_int(tune["seed"], 0):
        raise ConfigError(f"tune.seed must be an integer >= 0, got {tune['seed']!r}")
    grid = tune.get("grid", {})
    if not isinstance(grid, Mapping):
        raise ConfigError("tune.grid must be a table of setting = [values]")
    for key, values in grid.items():
        if not (isinstance(values, list) and values):
            raise ConfigError(f"tune.grid.{key} must be a non-empty list of values, got {values!r}")
