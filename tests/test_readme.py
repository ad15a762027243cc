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

    code = re.search(r"## Python quick start.*?```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    rng = np.random.default_rng(0)  # 300 users with string ids, each with 8-30 of 200 items
    rows = [(f"u{u}", f"i{i}") for u in range(300) for i in rng.choice(200, rng.integers(8, 31), replace=False)]
    (tmp_path / "plays.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    data, items = scope["data"], np.asarray(scope["items"])
    seen = {(u, i) for u, i in rows}
    labels = np.asarray(data.item_label(items))
    assert labels.shape == (2, 5)
    for user, recommended in zip(["u0", "u1"], labels):  # in the user's own ids, none already in the train history
        train_items = {data.item_label(j) for j in data.train[data.user_indices([user])[0]].indices}
        assert len(set(recommended)) == 5 and not train_items & set(recommended)
        assert train_items <= {i for u, i in seen if u == user}  # the history is the user's own pairs
    printed = capsys.readouterr().out.split()
    assert 0 <= float(printed[0]) <= 1 and 0 <= float(printed[1]) <= 1
    assert (tmp_path / "bspm-plays" / "model.json").is_file()
