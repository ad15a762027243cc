"""README.md's two set-up commands are exactly what .ci/run executes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text.split("## What the output means")[0])


def test_ci_runs_the_readme_commands():
    install, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert install in ci.splitlines()
    assert tests in ci.splitlines()
    assert "pytest" in tests


def test_readme_is_a_short_users_page():
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


def test_readme_python_quick_start_runs_on_a_csv(tmp_path, monkeypatch, capsys):
    import numpy as np

    import bspm_jax

    code = re.search(r"## Python quick start.*?```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    rng = np.random.default_rng(0)  # 300 users with string ids, each with 8-30 of 200 items
    rows = [(f"u{u}", f"i{i}") for u in range(300) for i in rng.choice(200, rng.integers(8, 31), replace=False)]
    (tmp_path / "plays.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    data, recs = scope["data"], scope["recs"].to_pandas()
    assert list(recs.columns) == ["user", "rank", "item", "score"]
    assert recs.user.tolist() == ["u0"] * 5 + ["u1"] * 5 + ["new"] * 5 and recs["rank"].tolist() == [1, 2, 3, 4, 5] * 3
    for user in ("u0", "u1"):  # in the user's own ids, none of them in the user's history (every pair of the CSV)
        mine = set(recs.item[recs.user == user])
        assert len(mine) == 5 and not mine & {i for u, i in rows if u == user}
    assert not set(recs.item[recs.user == "new"]) & {"i3", "i7"}
    assert (recs.groupby("user", sort=False).score.apply(lambda s: s.is_monotonic_decreasing)).all()
    held_out = {(data.user_ids[u], data.item_ids[i]) for u, i in zip(*data.test.nonzero())}
    assert held_out and held_out <= set(rows) and data.n_train + data.n_test == len(set(rows))
    printed = capsys.readouterr().out.split()
    assert 0 <= float(printed[0]) <= 1 and 0 <= float(printed[1]) <= 1
    again = bspm_jax.recommend(bspm_jax.load_model("bspm-plays"), bspm_jax.load_history("bspm-plays"),
                               users=["u0", "u1"], k=5, histories={"new": ["i3", "i7"]})
    assert again.to_pandas().drop(columns="score").equals(recs.drop(columns="score"))


def test_readme_run_output_is_what_bspm_run_prints(tmp_path, monkeypatch, capsys):
    import numpy as np

    from bspm_jax.cli import main

    rng = np.random.default_rng(0)  # the file of the quick start above
    rows = [(f"u{u}", f"i{i}") for u in range(300) for i in rng.choice(200, rng.integers(8, 31), replace=False)]
    (tmp_path / "plays.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "README.md").read_text()
    command = re.search(r"^\.venv/bin/bspm (run --data plays\.csv .+?) --json out\.json", text, re.M).group(1)
    shown = re.search(r"The second line prints:\n\n```\n(.+?)\n```", text, re.S).group(1)
    assert main([*command.split(), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[: len(shown.splitlines())] == shown.splitlines()
