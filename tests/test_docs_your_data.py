"""The Python example of docs/your-data.md runs on a CSV with times, and does what the page says."""

import re
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_your_data_page_python_example(tmp_path, monkeypatch, capsys):
    code = re.search(r"## In Python\n\n```python\n(.+?)\n```", (ROOT / "docs" / "your-data.md").read_text(), re.S).group(1)
    rng = np.random.default_rng(1)  # 120 users with string ids, each with 6-20 of 80 items, at distinct times
    rows = [(f"u{u}", f"i{i}", int(t)) for u in range(120)
            for i, t in zip(rng.choice(80, rng.integers(6, 21), replace=False), rng.permutation(10**6)[:20])]
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"])
    frame.to_csv(tmp_path / "plays.csv", index=False)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "your-data.md", "exec"), scope)
    data = scope["data"]
    latest = frame.sort_values("ts").groupby("user").tail(2)  # brute force: each user's two latest
    last = latest.groupby("user").tail(1)
    test = {(data.user_ids[u], data.item_ids[i]) for u, i in zip(*data.test.nonzero())}
    valid = {(data.user_ids[u], data.item_ids[i]) for u, i in zip(*data.valid.nonzero())}
    assert test == set(zip(last.user, last.item))
    assert valid == set(zip(latest.user, latest.item)) - test
    assert 0 <= float(capsys.readouterr().out.split()[0]) <= 1
    recs = pd.read_parquet("recs.parquet")
    assert list(recs.columns) == ["user", "rank", "item", "score"] and len(recs) == 120 * 10
    for user, mine in recs.groupby("user"):
        assert not set(mine.item) & set(frame.item[frame.user == user])  # nothing from the user's history
    new = scope["new"].to_pandas()
    assert new.user.tolist() == ["visitor"] * 5 and not set(new.item) & {"i3", "i7"}
