"""Accuracy of every model against the BSPM paper's Table 4 (full ranking, K = 20).

    python -m benchmarks.table4 --data ../shared/data/gowalla [--only bspm-em gf-cf ...]

Each configuration runs as its own ``bspm run`` process (so peak RSS is per run). Prints a
markdown table beside the paper's figures and writes every run's full JSON result to
``benchmarks/results/table4-<host>-<date>.json`` (one object per line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import subprocess
import tempfile

from . import results_path

# name: (model, preset or None, setting overrides, paper Recall@20, paper NDCG@20)
CONFIGS: dict[str, tuple[str | None, str | None, dict, float | None, float | None]] = {
    "bspm-em": (None, "gowalla-bspm-em", {}, 0.1920, 0.1597),
    "bspm-lm": (None, "gowalla-bspm-lm", {}, 0.1901, 0.1570),
    "gf-cf": ("gf-cf", None, {}, 0.1849, 0.1518),
    "blur-heat": ("blur-heat", None, {}, 0.1682, 0.1331),
    "blur-ideal": ("blur-ideal", None, {"rank": 448}, 0.1776, 0.1489),
    "blur-gfcf": ("blur-gfcf", None, {"rank": 448, "gfcf_beta": 0.2}, 0.1854, 0.1518),
    "lgcn-ide": (None, "gowalla-lgcn-ide", {}, None, None),
    "bspm-em-dopri5": (None, "gowalla-bspm-em", {"sharpen_solver": "dopri5", "rtol": 1e-6, "atol": 1e-8}, None, None),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/gowalla")
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--out", help="results file (default: benchmarks/results/table4-<host>-<date>.json)")
    args = parser.parse_args(argv)
    out = results_path("table4", args.out)
    rows = []
    for name in args.only:
        model_name, preset, overrides, paper_r, paper_n = CONFIGS[name]
        cmd = [sys.executable, "-m", "bspm_jax", "run", "--data", args.data, "--k", "20", "--quiet"]
        cmd += ["--batch-size", str(args.batch_size)]
        cmd += ["--preset", preset] if preset else ["--model", model_name]
        for key, value in overrides.items():
            cmd += ["--set", f"{key}={json.dumps(value)}"]
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([*cmd, "--json", f"{tmp}/r.json"], check=True, stdout=subprocess.DEVNULL)
            result = json.loads(Path(f"{tmp}/r.json").read_text())
        result["benchmark"] = {"config": name, "paper_recall@20": paper_r, "paper_ndcg@20": paper_n}
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        m, t = result["metrics"], result["timings_s"]
        evals = {p: s.get("max_evaluations") for p, s in result.get("solver_stats", {}).items()}
        row = (
            f"| {name} | {m['recall@20']:.5f} | {m['ndcg@20']:.5f} | {paper_r or '-'} | {paper_n or '-'} "
            f"| {t['preprocess']:.1f} | {t['inference']:.1f} | {result['memory']['peak_rss_bytes'] / 2**30:.2f} | {evals} |"
        )
        rows.append(row)
        print(row, flush=True)
    print("\n| config | Recall@20 | NDCG@20 | paper R@20 | paper N@20 | preprocess s | inference s | peak RSS GiB | evaluations per batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
