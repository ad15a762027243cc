"""Fuzzed bad input: malformed dataset files, configs and overrides fed to the real CLI entry point.

Every case must end in the documented error: exit code 2, one line on stderr starting with
``bspm: error:``, no traceback, and no output file. The cases run in-process through
``bspm_jax.cli.main`` (the function the ``bspm`` command calls), 1,040 in all. The DiffRec
``.npy`` loader is fuzzed directly (260 cases): whatever the bytes, it returns a Dataset or
raises one DataError.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bspm_jax.cli import main
from bspm_jax.data import Dataset, load_dataset
from bspm_jax.errors import DataError

CASES = 260
FUZZ = settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of ``bspm ARGV`` run in this process (argparse's exits included)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return code, err.getvalue()


def assert_documented_error(argv: list[str], out: Path) -> None:
    code, err = run_cli([*argv, "--json", str(out), "--quiet"])
    assert code == 2, (argv, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and (lines[-1].startswith("bspm: error:") or lines[-1].startswith("bspm run: error:")), err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*")), "partial output left behind"


# ---------------------------------------------------------------- LightGCN folders

BAD_TOKENS = ["x", "-3", "1.5", "1e3", "99999999999", "٣", "NaN", "inf", "-inf", "0x1f", "1,2", "+4", "\x00", "\ufffd", "é"]


@st.composite
def bad_lightgcn(draw) -> tuple[bytes, bytes]:
    """A small valid train/test pair with one corruption somewhere."""
    n_users = draw(st.integers(2, 6))
    train = [[u, *draw(st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True))] for u in range(n_users)]
    test = [[u, 8 + u % 2] for u in range(n_users)]
    kind = draw(st.sampled_from(["token", "test-range", "empty-train", "binary", "test-token"]))
    if kind == "empty-train":
        return draw(st.sampled_from([b"", b"\n\n", b"   \n"])), b"0 1\n"
    if kind == "binary":
        blob = draw(st.binary(min_size=1, max_size=40).filter(lambda b: not b.decode("utf-8", "ignore").strip(" \t\n0123456789")))
        return b"\x89PNG\x00" + blob, b"0 1\n"
    lines = test if kind.startswith("test") else train
    if kind == "test-range":  # ids unseen in train are cold (accepted), but not too sparse or too large
        test[draw(st.integers(0, n_users - 1))][-1] = draw(st.sampled_from([5 * 10**6, 2**31 - 1, 2**31 + 5]))
    else:
        row = lines[draw(st.integers(0, len(lines) - 1))]
        row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(BAD_TOKENS))
    if kind == "test-range":  # items 8, 9 must exist in train for the valid cases
        train[0] += [8, 9]
    text = lambda rows: ("\n".join(" ".join(map(str, r)) for r in rows) + "\n").encode("utf-8")
    return text(train), text(test)


@FUZZ
@given(bad_lightgcn())
def test_malformed_lightgcn_folders(files):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        (folder / "train.txt").write_bytes(files[0])
        (folder / "test.txt").write_bytes(files[1])
        assert_documented_error(["run", "--data", str(folder), "--model", "popularity", "--k", "1"], Path(tmp) / "out.json")


# ---------------------------------------------------------------- pairs files


@st.composite
def bad_pairs(draw) -> tuple[str, bytes]:
    """A CSV/TSV pairs file that is empty, header-only, one column wide, or binary."""
    suffix = draw(st.sampled_from([".csv", ".tsv", ".txt"]))
    kind = draw(st.sampled_from(["empty", "header", "one-column", "binary", "nul", "empty-id"]))
    sep = {".csv": ",", ".tsv": "\t", ".txt": ","}[suffix]
    good = [f"u{draw(st.integers(0, 5))}{sep}i{draw(st.integers(0, 5))}" for _ in range(draw(st.integers(0, 5)))]
    if kind == "empty":
        body = draw(st.sampled_from(["", "\n", "  \n\n"]))
    elif kind == "header":
        body = f"user{sep}item\n"
    elif kind == "one-column":
        body = f"user{sep}item\n" + "\n".join(good + [draw(st.sampled_from(["lonely", "u1", "7"]))]) + "\n"
    elif kind == "empty-id":
        body = f"user{sep}item\n" + "\n".join(good + [f"u1{sep}", f"{sep}i1"][draw(st.integers(0, 1)):][:1]) + "\n"
    else:
        junk = draw(st.binary(min_size=1, max_size=30))
        raw = b"\xff\xfe" if kind == "binary" else b"\x00\x01"
        return suffix, f"user{sep}item\n".encode() + b"\n".join(g.encode() for g in good) + b"\n" + raw + junk + sep.encode() + b"i1\n"
    return suffix, body.encode("utf-8")


@FUZZ
@given(bad_pairs())
def test_malformed_pairs_files(case):
    suffix, body = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"pairs{suffix}"
        path.write_bytes(body)
        assert_documented_error(["run", "--data", str(path), "--model", "popularity", "--k", "1"], Path(tmp) / "out.json")


# ---------------------------------------------------------------- DiffRec .npy folders


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


GOOD_NPY = _npy_bytes(np.array([[0, 1], [0, 2], [1, 0]], dtype=np.int64))
_DTYPES = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
                    hnp.byte_string_dtypes(), hnp.unicode_string_dtypes(), hnp.complex_number_dtypes())


@st.composite
def npy_file(draw) -> bytes:
    """Random bytes, a valid .npy file cut short or corrupted, or an arbitrary array saved by np.save."""
    kind = draw(st.sampled_from(["bytes", "truncated", "flipped", "array", "object", "header"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind in ("truncated", "flipped"):
        base = _npy_bytes(draw(hnp.arrays(draw(st.sampled_from([np.int64, np.int32, np.uint8])),
                                          hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                                          elements=st.integers(0, 100))))
        if kind == "truncated":
            return base[: draw(st.integers(0, len(base) - 1))]
        at = draw(st.integers(0, len(base) - 1))
        return base[:at] + bytes([draw(st.integers(0, 255))]) + base[at + 1:]
    if kind == "header":
        text = draw(st.sampled_from(["{'descr': '<i8', 'fortran_order': False, 'shape': (-2, 2), }",
                                     "{'descr': 'O', 'fortran_order': False, 'shape': (1, 2), }",
                                     "{'descr': '<i8', 'fortran_order': False, 'shape': (10**12, 2), }",
                                     "{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (1, 2), }",
                                     "(" * 500, "{}", ""]))
        header = text.encode("latin1").ljust(64 - 10, b" ")[:200] + b"\n"
        major = draw(st.sampled_from([1, 2, 3]))
        size = len(header).to_bytes(2 if major == 1 else 4, "little")
        return b"\x93NUMPY" + bytes([major, 0]) + size + header + draw(st.binary(max_size=40))
    if kind == "object":
        return _npy_bytes(np.array(draw(st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=4)) + [None], dtype=object))
    shape = draw(st.one_of(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                           st.tuples(st.integers(0, 6), st.just(2))))
    return _npy_bytes(draw(hnp.arrays(draw(_DTYPES), shape)))


@FUZZ
@given(st.sampled_from(["train", "valid", "test"]), npy_file())
def test_malformed_diffrec_files_give_a_dataset_or_a_data_error(split, body):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dr"
        folder.mkdir()
        files = {"train": GOOD_NPY, "test": _npy_bytes(np.array([[1, 2], [2, 0]], dtype=np.int64)), split: body}
        for name, data in files.items():
            (folder / f"{name}_list.npy").write_bytes(data)
        try:
            ds = load_dataset(folder)
        except DataError as err:
            message = str(err)
            assert "\n" not in message and (f"{split}_list.npy" in message or "in both" in message), message
            return
        assert isinstance(ds, Dataset) and ds.train.shape == ds.test.shape


# ---------------------------------------------------------------- configs and overrides

BAD_SETTINGS = {
    "T_s": ["nan", "inf", "-inf", "-1.0", "0", "0.0", '"x"', "true", "[1]"],
    "T_b": ["nan", "inf", "-2.5", "0"],
    "k": ["nan", "inf", "0", "-0.1", '"hot"'],
    "beta": ["nan", "inf", "-1", "-0.01", '"a"'],
    "K_s": ["0", "-1", "1.5", '"2"', "true"],
    "K_b": ["0", "-3", "2.5"],
    "rank": ["0", "-5", "3500", "7183", "1000000000", "1.5", "true", '"448"'],
    "sharpen_solver": ['"rk5"', '"Euler "', '""', "3"],
    "blur": ['"hot"', "1"],
    "merge": ['"middle"', "false"],
    "sharpen": ['"yes"', "1"],
    "rtol": ["0", "-1e-6", "nan"],
    "nosuchsetting": ["1"],
}
BAD_TABLES = [
    "[evaluation]\nk = [0]\n", "[evaluation]\nk = []\n", "[evaluation]\nbatch_size = 0\n",
    "[evaluation]\nbatch_size = -4\n", "[evaluation]\nbatch_size = \"many\"\n", "[evaluation]\ndevices = 0\n",
    "[data]\nholdout = 1.5\n", "[data]\nnope = 1\n", "[modle]\nname = \"bspm\"\n", "[model]\nname = \"nope\"\n",
    "[model]\nrank = 3\n", "model = 3\n", "[model\nname = \"bspm\"\n", "\x00\x01\x02", "[model]\nname = \"bspm\"\nT_s = \n",
]


@st.composite
def bad_config(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.sampled_from(BAD_TABLES)).encode("utf-8", "surrogatepass")
    key = draw(st.sampled_from(sorted(BAD_SETTINGS)))
    value = draw(st.sampled_from(BAD_SETTINGS[key]))
    good = draw(st.dictionaries(st.sampled_from(["T_s", "beta", "K_s"]), st.sampled_from(["2.0", "0.1", "1"]), max_size=2))
    good.pop(key, None)
    lines = [f"{k} = {v}" for k, v in good.items()] + [f"{key} = {value}"]
    return ("[model]\nname = \"bspm\"\n" + "\n".join(draw(st.permutations(lines))) + "\n").encode()


@FUZZ
@given(bad_config())
def test_bad_config_files(body):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exp.toml"
        path.write_bytes(body)
        assert_documented_error(["run", "--config", str(path)], Path(tmp) / "out.json")


@FUZZ
@given(st.sampled_from(sorted(BAD_SETTINGS)).flatmap(lambda key: st.tuples(st.just(key), st.sampled_from(BAD_SETTINGS[key]))),
       st.sampled_from(["run", "tune", "recommend"]))
def test_bad_overrides_on_every_command(setting, command):
    key, value = setting
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        extra = {"run": [], "tune": ["--grid", "T_s=1.0", "--out", str(Path(tmp) / "t")],
                 "recommend": ["--users", "0"]}[command]
        argv = [command, "--model", "bspm", "--set", f"{key}={value}", *extra]
        if command == "run":
            assert_documented_error(argv, out)
            return
        code, err = run_cli([*argv, "--quiet"])
        assert code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("bspm: error:"), err
        assert not (Path(tmp) / "t").exists()
