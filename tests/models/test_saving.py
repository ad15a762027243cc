"""Saving and loading fitted models: one generic format, bit-identical scores, every damage refused."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bspm_jax
from bspm_jax import MODELS, ConfigError, ModelFileError, load_model, make_model
from bspm_jax.ranking import rank_rows
from bspm_jax.runtime import native
from bspm_jax import serial
from bspm_jax.models import AbstractTrainingFree
from bspm_jax.training import TrainSettings, train
from bspm_jax.data.sparse import matrix_digest
from bspm_jax.data.synthetic import power_law_interactions

TRAIN = sp.csr_matrix(power_law_interactions(120, 90, 900, seed=3), dtype=np.float32)
SMALL = {"rank": 12}
TINY = {  # small networks: the round trip does not depend on their width, their compilation time does
    "mf-bpr": {"dim": 8},
    "lightgcn": {"dim": 8, "layers": 2},
    "gmf": {"factors": 4},
    "mlp": {"layers": [8, 4]},
    "neumf": {"factors": 4, "layers": [8, 4]},
    "mult-vae": {"hidden": [16], "latent": 8},
    "mult-dae": {"latent": 8},
    "s-diff": {"hidden": [16]},
    "giffcf": {"embed_dim": 8},
    "chebycf": {"eta": 12},
    "ensemble": {"members": [{"name": "chebycf", "eta": 12}, {"name": "gf-cf", "rank": 12}], "weights": [0.6, 0.4]},
}


def _settings(name: str) -> dict:
    cls, _ = MODELS[name]
    return {**{k: v for k, v in SMALL.items() if k in cls.setting_names()}, **TINY.get(name, {})}


def _fitted(name: str):
    """Fitted in closed form, or trained for a few epochs (each one full-batch step: one compiled step per model)."""
    model = make_model(name, **_settings(name))
    if isinstance(model, AbstractTrainingFree):
        return model.fit(TRAIN)
    return train(model, TRAIN, TrainSettings(epochs=3, batch_size=1 << 16)).model


def _scores(model) -> tuple[np.ndarray, np.ndarray]:
    ranking = rank_rows(model, TRAIN, 15, batch_size=50, users=np.arange(TRAIN.shape[0]))
    return ranking.items, ranking.scores


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every registered model fitted on TRAIN and saved: name -> (model, folder)."""
    root = tmp_path_factory.mktemp("models")
    return {name: (model := _fitted(name), model.save(root / name)) for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_gives_bit_identical_scores(saved, name):
    model, folder = saved[name]
    loaded = load_model(folder)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    assert loaded.fitted_on == model.fitted_on and loaded.fitted_on.digest == matrix_digest(TRAIN)
    want_items, want_scores = _scores(model)
    got_items, got_scores = _scores(loaded)
    np.testing.assert_array_equal(got_items, want_items)
    assert got_scores.tobytes() == want_scores.tobytes()  # bit for bit


def test_header_records_model_settings_versions_train_and_arrays(saved):
    model, folder = saved["bspm"]
    header = json.loads((folder / serial.HEADER).read_text())
    assert header["format"] == serial.FORMAT and header["format_version"] == serial.FORMAT_VERSION
    assert header["library_version"] == bspm_jax.__version__
    assert header["model"] == "bspm" and header["settings"] == json.loads(json.dumps(model.config()))
    assert header["train"] == {"n_users": 120, "n_items": 90, "n_interactions": TRAIN.nnz, "digest": matrix_digest(TRAIN)}
    specs: dict = {}
    serial._collect_arrays(header["state"], specs)
    with np.load(folder / serial.ARRAYS, allow_pickle=False) as npz:
        assert set(npz.files) == set(specs)
        for name, spec in specs.items():
            assert list(npz[name].shape) == spec["shape"] and npz[name].dtype.str == spec["dtype"]
    # the arrays are exactly the model's array leaves
    leaves = [np.asarray(x) for x in bspm_jax_leaves(model)]
    assert sorted(a.nbytes for a in leaves) == sorted(np.load(folder / serial.ARRAYS)[n].nbytes for n in specs)


def bspm_jax_leaves(model):
    import equinox as eqx
    import jax

    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


def test_digest_depends_on_content_not_object():
    copy = sp.csr_matrix(TRAIN.toarray())
    assert matrix_digest(copy) == matrix_digest(TRAIN)
    other = TRAIN.copy()
    other[0, 0] = 1.0 - other[0, 0]
    assert matrix_digest(other) != matrix_digest(TRAIN)


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    dst.mkdir()
    for f in folder.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _header(folder: Path) -> dict:
    return json.loads((folder / serial.HEADER).read_text())


def _write_header(folder: Path, header: dict) -> None:
    """A header edited with its checksum updated, so that the checks behind the checksum are reached."""
    (folder / serial.HEADER).write_text(json.dumps({**header, "header_sha256": serial.header_digest(header)}))


def _damage_header_value(folder):
    """One setting changed by hand, the checksum left as saved."""
    header = _header(folder)
    header["settings"]["T_b"] = header["settings"]["T_b"] + 0.1
    (folder / serial.HEADER).write_text(json.dumps(header))


def _damage_truncated_header(folder):
    text = (folder / serial.HEADER).read_text()
    (folder / serial.HEADER).write_text(text[: len(text) // 2])


def _damage_truncated_arrays(folder):
    data = (folder / serial.ARRAYS).read_bytes()
    (folder / serial.ARRAYS).write_bytes(data[: len(data) // 3])


def _damage_flipped_array_byte(folder):
    """Change one value inside an array, keeping a valid npz: only the SHA-256 notices."""
    with np.load(folder / serial.ARRAYS, allow_pickle=False) as npz:
        arrays = {n: npz[n].copy() for n in npz.files}
    name = max(arrays, key=lambda n: arrays[n].size)
    arrays[name].reshape(-1)[arrays[name].size // 2] += 1
    np.savez(folder / serial.ARRAYS, **arrays)


def _damage_version(folder):
    _write_header(folder, {**_header(folder), "format_version": serial.FORMAT_VERSION + 1})


def _damage_shape(folder):
    header = _header(folder)
    specs: dict = {}
    serial._collect_arrays(header["state"], specs)
    spec = next(iter(specs.values()))
    spec["shape"] = [n + 1 for n in spec["shape"]]
    _write_header(folder, header)


def _damage_missing_array(folder):
    with np.load(folder / serial.ARRAYS, allow_pickle=False) as npz:
        arrays = {n: npz[n] for n in npz.files[1:]}
    np.savez(folder / serial.ARRAYS, **arrays)


def _damage_foreign_class(folder):
    header = _header(folder)
    header["state"]["graph"]["class"] = "os:system"
    _write_header(folder, header)


def _damage_setting(folder):
    header = _header(folder)
    header["settings"]["T_s"] = -1.0
    _write_header(folder, header)


def _damage_missing_header(folder):
    (folder / serial.HEADER).unlink()


DAMAGES = {
    "truncated header": (_damage_truncated_header, "truncated or corrupted"),
    "truncated arrays": (_damage_truncated_arrays, "truncated or corrupted"),
    "an array changed": (_damage_flipped_array_byte, "SHA-256"),
    "another format version": (_damage_version, "format version"),
    "shape differs from the header": (_damage_shape, "the header says"),
    "an array missing": (_damage_missing_array, "does not match the header"),
    "a class outside bspm_jax": (_damage_foreign_class, "not part of bspm_jax"),
    "an impossible setting": (_damage_setting, "terminal time T must be"),
    "no header": (_damage_missing_header, "model.json is missing"),
    "a header value changed": (_damage_header_value, "do not match their SHA-256"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_saves_are_refused_with_one_clear_error(saved, tmp_path, damage):
    fn, message = DAMAGES[damage]
    folder = _copy(saved["bspm"][1], tmp_path)
    fn(folder)
    with pytest.raises(ModelFileError, match=message):
        load_model(folder)


def test_saving_refuses_unfitted_models_and_foreign_folders(saved, tmp_path):
    with pytest.raises(ConfigError, match="not fitted"):
        make_model("bspm", rank=8).save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"precious")
    model = saved["popularity"][0]
    with pytest.raises(ConfigError, match="holds other files"):
        model.save(foreign)
    assert [p.name for p in foreign.iterdir()] == ["cat.jpg"] and (foreign / "cat.jpg").read_bytes() == b"precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        model.save(tmp_path / "file")
    with pytest.raises(ConfigError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "m")


def test_saving_over_a_saved_model_replaces_it_and_leaves_no_temporaries(saved, tmp_path):
    target = tmp_path / "m"
    saved["popularity"][0].save(target)
    saved["bspm"][0].save(target)
    assert load_model(target).name == "bspm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in target.iterdir()) == [serial.ARRAYS, serial.HEADER]


def test_a_loaded_model_picks_a_kernel_path_this_cpu_runs(monkeypatch):
    monkeypatch.setattr(native, "isa_paths", lambda: ("avx2", "baseline"))
    assert native.relocate("avx512") == "avx2" and native.relocate("baseline") == "baseline"
    assert native.relocate(None) is None
    monkeypatch.setattr(native, "isa_paths", lambda: ())
    assert native.relocate("avx512") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_saves_load_or_fail_with_a_model_file_error(saved, tmp_path_factory, data):
    folder = _copy(saved["gf-cf"][1], tmp_path_factory.mktemp("fuzz"))
    target = folder / data.draw(st.sampled_from([serial.HEADER, serial.ARRAYS]))
    blob = bytearray(target.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del blob[pos:]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    target.write_bytes(bytes(blob))
    try:
        model = load_model(folder)
    except ModelFileError:
        return
    # damage that loads (e.g. inside JSON whitespace) must still give the saved model
    assert model.config() == saved["gf-cf"][0].config()


def bspm(capsys, *args: str) -> tuple[int, str, str]:
    """``bspm ARGS`` in this process (shares compilations): exit code, stdout, stderr."""
    from bspm_jax.cli import main

    code = main([*args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_fit_save_then_run_and_recommend_load_match_a_refit(tmp_path, capsys):
    folder, out_fit, out_load = tmp_path / "m", tmp_path / "fit.json", tmp_path / "load.json"
    settings_ = ["--set", "rank=24", "--k", "20"]
    code, out, err = bspm(capsys, "fit", *settings_, "--save", str(folder))
    assert code == 0 and "saved" in out, err
    assert bspm(capsys, "run", *settings_, "--json", str(out_fit))[0] == 0
    assert bspm(capsys, "run", "--load", str(folder), "--json", str(out_load))[0] == 0
    fit, load = json.loads(out_fit.read_text()), json.loads(out_load.read_text())
    assert load["metrics"] == fit["metrics"] and load["config"]["model"] == fit["config"]["model"]
    assert load["timings_s"]["preprocess"] < fit["timings_s"]["preprocess"]
    recs_fit, recs_load = tmp_path / "a.csv", tmp_path / "b.csv"
    assert bspm(capsys, "recommend", *settings_[:2], "--users", "0,7", "--history", "1,2,3", "--out", str(recs_fit))[0] == 0
    code, _, err = bspm(capsys, "recommend", "--load", str(folder), "--users", "0,7", "--history", "1,2,3", "--out", str(recs_load))
    assert code == 0, err
    assert recs_load.read_text() == recs_fit.read_text()


def test_cli_load_refusals_are_one_line(tmp_path, saved, capsys):
    folder = _copy(saved["bspm"][1], tmp_path)
    refusals = [
        (["run", "--load", str(folder)], "fitted on another train matrix"),  # fitted on TRAIN, not the sample
        (["recommend", "--load", str(folder), "--users", "0"], "fitted on other interactions"),
        (["run", "--load", str(tmp_path / "none")], "no saved model"),
        (["run", "--load", str(folder), "--preset", "gowalla-em"], "not --config or --preset"),
        (["run", "--load", str(folder), "--set", "T_s=3"], "keeps its settings"),
    ]
    for args, message in refusals:
        code, _, err = bspm(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    _damage_flipped_array_byte(folder)
    code, _, err = bspm(capsys, "run", "--load", str(folder))
    assert code == 2 and "SHA-256" in err and len(err.strip().splitlines()) == 1


def test_saved_history_round_trip_and_refusals(tmp_path):
    """A model saved with its data keeps the id maps and histories; a damaged or foreign history is refused."""
    from bspm_jax import from_frame, load_history
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"user": [f"u{u}" for u in rng.integers(0, 40, 400)], "item": rng.integers(0, 30, 400) * 7})
    plays = from_frame(frame)
    model = make_model("popularity").fit(plays)
    folder = model.save(tmp_path / "m", data=plays)
    back = load_history(folder)
    assert back.user_ids.tolist() == sorted(set(frame.user)) and back.item_ids.tolist() == sorted(set(frame.item))
    assert back.item_ids.dtype == np.int64 and (back.train != plays.matrix()).nnz == 0 and back.test.nnz == 0
    assert load_history(model.save(tmp_path / "bare")) is None  # saved without data: nothing to recommend by id from
    with pytest.raises(ConfigError, match="not what the popularity model was fitted on"):
        model.save(tmp_path / "x", data=from_frame(frame.iloc[:-50]))
    header = _header(folder)
    with np.load(folder / serial.ARRAYS, allow_pickle=False) as npz:
        arrays = {n: npz[n] for n in npz.files}
    key = header["history"]["indices"]["array"]
    arrays[key] = (arrays[key] + 1) % 30  # another matrix, every checksum rewritten to match
    np.savez(folder / serial.ARRAYS, **arrays)
    header["history"]["indices"]["sha256"] = bspm_jax.runtime.io.array_sha256(arrays[key])
    _write_header(folder, header)
    load_model(folder)  # the model itself is intact
    with pytest.raises(ModelFileError, match="the saved history is not the matrix the model was fitted on"):
        load_history(folder)
    arrays[key][0] += 1  # and now bytes that differ from the header
    np.savez(folder / serial.ARRAYS, **arrays)
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_history(folder)
