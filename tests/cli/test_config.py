"""TOML configuration: presets, overrides, round trips through dumps, structural errors."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax.config import (PRESET_ALIASES, Config, config_from_dict, dumps, get_preset, load_config, parse_grid,
                             parse_override, preset_names, presets)
from bspm_jax.errors import ConfigError
from bspm_jax.models import make_model

scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
)
values = st.one_of(scalars, st.lists(st.integers(-1000, 1000), max_size=4), st.lists(st.text(max_size=5), max_size=3))
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=4), st.dictionaries(keys, st.dictionaries(keys, values, max_size=4), max_size=3))
def test_dumps_round_trips_through_tomllib(top, tables):
    doc = {**{f"t_{k}": v for k, v in top.items()}, **{f"T_{k}": v for k, v in tables.items() if v}}
    assert tomllib.loads(dumps(doc)) == doc


@pytest.mark.parametrize("text", ["\x7f", 'a"b', "c\\d", "\x00\n\t\r", "é€😀", "\u2028", "", "'"])
def test_dumps_escapes_what_toml_forbids(text):
    assert tomllib.loads(dumps({"x": text, "t": {"y": [text]}})) == {"x": text, "t": {"y": [text]}}


def test_presets_hold_the_paper_settings_and_build():
    em = get_preset("gowalla-em")
    assert em.model_name == "bspm"
    assert em.model_settings == {"blur": "heat", "T_b": 1.0, "K_b": 1, "beta": 0.2, "rank": 448,
                                 "sharpen_solver": "rk4", "T_s": 2.5, "K_s": 1, "merge": "early"}
    assert get_preset("gowalla-lm").model_settings == {**em.model_settings, "merge": "late"}
    assert {"gowalla-bspm-em", "gowalla-bspm-lm", "yelp2018-bspm-em", "amazon-book-bspm-lm", "gowalla-gf-cf",
            "gowalla-bspm-tune"} <= set(preset_names())
    for name in preset_names():
        preset = get_preset(name)
        assert preset.description
        make_model(preset.model_name, **preset.model_settings)  # every preset is a valid model


def test_preset_names_follow_one_pattern_and_earlier_names_still_resolve():
    datasets = ("gowalla", "ml1m", "yelp2018", "amazon-book")
    for entry in presets():  # <dataset>-<model>[-<variant>], the model being the one the preset builds
        name, model = entry["name"], entry["model"]
        dataset = next(d for d in datasets if name.startswith(d + "-"))
        rest = name[len(dataset) + 1:]
        model_part = {"blur-heat": "gf-cf"}.get(model, model)  # GF-CF without its ideal part is still GF-CF
        assert rest == model_part or rest.startswith(model_part + "-"), entry
        assert entry["description"] and entry["aliases"] == sorted(a for a, n in PRESET_ALIASES.items() if n == name)
    assert set(PRESET_ALIASES.values()) <= set(preset_names()) and not set(PRESET_ALIASES) & set(preset_names())
    for old, new in PRESET_ALIASES.items():  # every earlier name gives the same configuration
        assert get_preset(old).to_dict() == get_preset(new).to_dict()
    with pytest.raises(ConfigError, match="unknown preset 'gowalla-nope'.*gowalla-bspm-em"):
        get_preset("gowalla-nope")


@pytest.mark.parametrize(
    "text, key, value",
    [("T_s=3", "T_s", 3), ("T_s = 2.5", "T_s", 2.5), ("residual=true", "residual", True),
     ("sharpen_solver=rk4", "sharpen_solver", "rk4"), ('merge="late"', "merge", "late"),
     ("evaluation.k=[10, 20]", "evaluation.k", [10, 20])],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_parse_grid():
    assert parse_grid("T_s=1.5,2.0, 3") == ("T_s", [1.5, 2.0, 3])
    assert parse_grid("sharpen_solver=euler,rk4") == ("sharpen_solver", ["euler", "rk4"])
    assert parse_grid("beta=[0.1, 0.2]") == ("beta", [0.1, 0.2])
    with pytest.raises(ConfigError):
        parse_grid("T_s=")


def test_overrides_by_table_and_model_change():
    base = get_preset("gowalla-em")
    cfg = base.with_overrides(["T_s=3.0", "evaluation.batch_size=64", "tune.grid.beta=[0.1]", "data.holdout=0.3"])
    assert cfg.model_settings["T_s"] == 3.0 and cfg["evaluation"] == {"batch_size": 64}
    assert cfg["tune"] == {"grid": {"beta": [0.1]}} and cfg["data"] == {"holdout": 0.3}
    assert base.model_settings["T_s"] == 2.5  # the preset is not modified
    other = base.with_values({"model.name": "gf-cf"})
    assert other.model_name == "gf-cf" and other.model_settings == {}  # no settings leak into another model
    with pytest.raises(ConfigError, match="unknown config table 'modle'"):
        base.with_overrides(["modle.T_s=1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("T_s")


def test_relative_data_path_is_relative_to_the_file(tmp_path):
    sub = tmp_path / "exp"
    sub.mkdir()
    (sub / "c.toml").write_text('[data]\npath = "../data/gowalla"\n')
    assert load_config(sub / "c.toml")["data"]["path"] == str(sub / "../data/gowalla")
    (sub / "abs.toml").write_text(f'[data]\npath = "{tmp_path}"\n')
    assert load_config(sub / "abs.toml")["data"]["path"] == str(tmp_path)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"model": {"rank": 3}}, "needs a name"),
        ({"model": "bspm"}, "must be a table"),
        ({"evaluation": {"batch_size": 0}}, "batch_size"),
        ({"evaluation": {"k": []}}, "evaluation.k"),
        ({"tune": {"metric": "recall"}}, "tune.metric"),
        ({"tune": {"validation": 1.0}}, "tune.validation"),
        ({"tune": {"grid": {"T_s": []}}}, "tune.grid.T_s"),
        ({"description": 3}, "description"),
        ({"extra": {}}, "unknown table or key extra"),
    ],
)
def test_structural_errors_name_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe[model")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    assert Config({}).model_name == "bspm"  # the library's main model


def test_data_validation_carves_a_seeded_split_from_train_when_the_data_has_none():
    import numpy as np

    from bspm_jax.data import holdout_split, load_dataset
    from bspm_jax.experiment import dataset_from_config

    plain = load_dataset(None)
    assert plain.valid is None
    carved = dataset_from_config(Config({"data": {"validation": 0.1, "validation_seed": 3}}))
    kept, held = holdout_split(plain.train, 0.1, 3)
    assert (carved.train != kept).nnz == 0 and (carved.valid != held).nnz == 0
    assert (carved.test != plain.test).nnz == 0 and carved.stats["validation"] == "carved"
    with pytest.raises(ConfigError, match="validation_seed"):
        dataset_from_config(Config({"data": {"validation": 0.1, "validation_seed": -1}}))
