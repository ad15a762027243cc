"""MkDocs hook: pages generated from the repository, so that no figure or option is typed by hand.

- ``results/*.md``: tables built from ``benchmarks/results/**/*.json``. Each table holds the
  figures of one protocol only. A JSON file no reader understands is listed as skipped on
  the results index, never an error.
- ``examples/*.md``: the notebooks' markdown and code cells (stored without outputs).
- ``assets/figures/*.png``: the figures in ``benchmarks/results/figures/``.
- ``<!-- bspm:cli -->`` in a page: ``bspm --help`` and every ``bspm <command> --help``, from
  the command's own argument parser.
- ``<!-- bspm:presets -->`` in a page: the shipped presets (``bspm_jax/configs/*.toml``) with
  their descriptions.
- Every ``--preset NAME`` written in a page must name a shipped preset (or an earlier name
  of one): a name that does not is a warning, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.bspm_docs")

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ROOT / "bspm_jax" / "configs"
NOTEBOOKS = ROOT / "notebooks"
FIGURES = RESULTS / "figures"

PROTOCOL_TEXT = {
    "A": "protocol A: fitted (or trained) on train, chosen on validation; validation and test scored "
         "from the train history, test ranked with train and validation items excluded",
    "refit": "the refit protocol: chosen on validation, then fitted (or trained) again on train + validation; "
             "test scored from that history (an easier task)",
    "holdout": "holdout protocol: no validation split; fitted on train, test scored from the train "
               "history with train items excluded",
}


# ----------------------------------------------------------------------------- formatting

def _num(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or x is None:
        return "-" if x is None else ("yes" if x else "no")
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{digits}f}"
    return str(x)


def _sec(x: Any) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x:,.1f}"


def _gib(x: Any) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x / 2**30:.2f}"


def _ms(stat: Any) -> str:
    """mean ± sd of a ``{"mean", "sd", "n"}`` summary (sd left out for one run)."""
    if not isinstance(stat, dict) or "mean" not in stat:
        return "-"
    if stat.get("n", 2) == 1 or stat.get("sd") is None:
        return _num(float(stat["mean"]))
    return f"{float(stat['mean']):.4f} ± {float(stat['sd']):.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _load(path: Path) -> Any:
    """A JSON file, or JSON lines (one object per line) as a list."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _metrics(m: dict[str, Any], keys: tuple[str, ...] = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")) -> list[str]:
    return [_num(m.get(k)) if isinstance(m.get(k), (int, float)) else "-" for k in keys]


METRIC_HEAD = ["R@10", "R@20", "N@10", "N@20"]


# ----------------------------------------------------------------------------- readers
# Each reader takes (path, data) and returns a list of (protocol, section title, markdown) or
# raises / returns None when it does not understand the file.

def _protocol_of_record(d: dict[str, Any]) -> tuple[str, bool]:
    """The record's protocol name and whether it was derived (older records do not store it)."""
    p = d.get("protocol")
    if isinstance(p, dict) and p.get("name") in PROTOCOL_TEXT:
        return p["name"], False
    if isinstance(p, str) and p in PROTOCOL_TEXT:
        return p, False
    refit = bool(((d.get("config") or {}).get("evaluation") or {}).get("refit_with_valid"))
    has_valid = "n_valid" in (d.get("dataset") or {})
    return ("refit" if refit else "A" if has_valid else "holdout"), True


def read_run_record(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """One ``bspm run --json`` record (model, config, dataset, metrics)."""
    if not (isinstance(d, dict) and {"model", "dataset", "metrics"} <= set(d) and isinstance(d["metrics"], dict)):
        return None
    protocol, derived = _protocol_of_record(d)
    if d["model"] == "giffcf":
        valid = (d.get("validation_metrics") or {}).get("recall@20")
        best = (d.get("training") or {}).get("best_epoch", "-")
        row = [f"`{_rel(path)}`", *_metrics(d["metrics"]), _num(valid) if valid is not None else "-", str(best)]
        return [{"family": "giffcf", "protocol": protocol, "title": "runs (`bspm run --json`)",
                 "header": ["record"] + METRIC_HEAD + ["validation R@20", "best epoch"], "row": row}]
    t = d.get("timings_s") or {}
    valid = (d.get("validation_metrics") or {}).get("recall@20")
    return [{
        "family": "runs", "dataset": (d["dataset"] or {}).get("name", "?"), "protocol": protocol,
        "row": [d["model"], *_metrics(d["metrics"]), _num(valid) if valid is not None else "-",
                _sec(t.get("preprocess")), _sec(t.get("inference")),
                f"`{_rel(path)}`" + (" (protocol derived)" if derived else "")],
    }]


def read_table4(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.table4``: JSON lines, one ``bspm run`` record each with a ``benchmark`` block."""
    if not (isinstance(d, list) and d and all(isinstance(r, dict) and "benchmark" in r and "metrics" in r for r in d)):
        return None
    rows = []
    for r in d:
        b, m, t = r["benchmark"], r["metrics"], r.get("timings_s") or {}
        rows.append([f"`{b.get('config', r.get('model'))}`", _num(m.get("recall@20")), _num(m.get("ndcg@20")),
                     _num(b.get("paper_recall@20")), _num(b.get("paper_ndcg@20")),
                     _sec(t.get("preprocess")), _sec(t.get("inference")), _sec(t.get("total")),
                     _gib((r.get("memory") or {}).get("peak_rss_bytes"))])
    text = _table(["config", "R@20", "N@20", "paper R@20", "paper N@20", "preprocess s", "inference s",
                   "total s", "peak RSS GiB"], rows)
    return [{"family": "table4", "protocol": "holdout", "title": _rel(path), "text": text}]


def read_trained(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.trained``: ``runs`` (preset/seed) and ``summary`` (mean and sd over seeds)."""
    if not (isinstance(d, dict) and isinstance(d.get("runs"), dict) and d["runs"]):
        return None
    runs = d["runs"]
    if not all(isinstance(r, dict) and "model" in r and "test" in r for r in runs.values()):
        return None
    out = []
    summary = d.get("summary") if isinstance(d.get("summary"), dict) else {}
    for key, label in (("test", "A"), ("test_refit_train_valid", "refit")):
        rows = []
        presets = sorted({name.split("/")[0] for name in runs})
        for preset in presets:
            seeds = [r for n, r in runs.items() if n.split("/")[0] == preset and r.get(key)]
            if not seeds:
                continue
            s = (summary.get(preset) or {}).get(key) or {}
            if s and all(isinstance(s.get(m), dict) for m in ("recall@20", "ndcg@20")):
                r20, n20 = _ms(s["recall@20"]), _ms(s["ndcg@20"])
            elif len(seeds) == 1:
                r20, n20 = _num(seeds[0][key].get("recall@20")), _num(seeds[0][key].get("ndcg@20"))
            else:
                continue
            best = ", ".join(str(r.get("best_epoch", "-")) for r in seeds)
            spe = [r.get("seconds_per_epoch") for r in seeds if isinstance(r.get("seconds_per_epoch"), (int, float))]
            spe_txt = "-" if not spe else (f"{min(spe):.2f}" if len(spe) == 1 else f"{min(spe):.2f}-{max(spe):.2f}")
            interrupted = any(r.get("interrupted") for r in seeds)
            rows.append([f"`{preset}`", seeds[0]["model"], str(len(seeds)), r20, n20, best, spe_txt,
                         "yes" if interrupted else "no"])
        if rows:
            text = _table(["preset", "model", "seeds", "test R@20", "test N@20", "best epoch(s)", "s / epoch",
                           "interrupted"], rows)
            dataset = str(d.get("data", "?")).rstrip("/").split("/")[-1]
            out.append({"family": "trained", "protocol": label, "dataset": dataset, "title": _rel(path), "text": text})
    return out or None


def read_s_diff(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.s_diff``: seeds, ablations, BSPM beside, and the paper's figures."""
    if not (isinstance(d, dict) and isinstance(d.get("seeds_summary"), dict) and isinstance(d.get("runs"), dict)):
        return None
    out = []
    paper = d.get("paper") or {}
    bspm = d.get("bspm") or {}
    for key, label in (("test_history_train", "A"), ("test_refit_train_valid", "refit")):
        s = d["seeds_summary"].get(key)
        if not isinstance(s, dict):
            continue
        n = sum(1 for name in d["runs"] if name.startswith("seed") and key in d["runs"][name])
        rows = [[f"S-Diff (`{d.get('preset', '?')}`), {n} seeds", *[_ms(s.get(k)) for k in
                                                                     ("recall@10", "recall@20", "ndcg@10", "ndcg@20")]]]
        if isinstance(bspm.get(key), dict):
            rows.append(["BSPM (same split)", *_metrics(bspm[key])])
        if label == "A":
            for name, m in paper.items():
                if isinstance(m, dict) and "recall@20" in m:
                    rows.append([f"paper: {name}", *_metrics(m)])
        out.append({"family": "s-diff", "protocol": label, "title": _rel(path) + " (seeds)",
                    "text": _table(["model"] + METRIC_HEAD, rows)})
        ablations = [[f"`{name}`", *_metrics(r[key]),
                      _num((r.get("validation") or {}).get("recall@20"))]
                     for name, r in d["runs"].items() if not name.startswith("seed") and isinstance(r.get(key), dict)]
        if ablations:
            if label == "A":
                for name in ("ddpm", "ve", "vp"):
                    if isinstance(paper.get(name), dict):
                        ablations.append([f"paper Table 3: {name}", *_metrics(paper[name]), "-"])
            out.append({"family": "s-diff", "protocol": label, "title": _rel(path) + " (ablations, seed 0)",
                        "text": _table(["variant"] + METRIC_HEAD + ["validation R@20"], ablations)})
    return out or None


def read_giffcf_reference(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.giffcf_reference``: the reference code's checkpoint scored by this model."""
    if not (isinstance(d, dict) and "checkpoint" in d and isinstance(d.get("test"), dict)):
        return None
    rows = [["GiffCF reference checkpoint", *_metrics(d["test"]), _num((d.get("valid") or {}).get("recall@20"))]]
    return [{"family": "giffcf", "protocol": str(d.get("protocol", "A")), "title": _rel(path),
             "text": _table(["model"] + METRIC_HEAD + ["validation R@20"], rows)}]


def read_giffcf_heads(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.giffcf_heads``: trained models composed as the heads of one model."""
    if not (isinstance(d, dict) and isinstance(d.get("models"), dict) and isinstance(d.get("composed"), dict)):
        return None
    rows = [[f"`{Path(name).name}`", *_metrics(m.get("test") or {}), _num((m.get("valid") or {}).get("recall@20"))]
            for name, m in d["models"].items()]
    c = d["composed"]
    rows.append(["composed (heads)", *_metrics(c.get("test") or {}), _num((c.get("valid") or {}).get("recall@20"))])
    return [{"family": "giffcf", "protocol": str(d.get("protocol", "A")), "title": _rel(path),
             "text": _table(["model"] + METRIC_HEAD + ["validation R@20"], rows)}]


def read_tables(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.tables``: the speed rows of the BSPM paper's Tables 5 and 6."""
    if not (isinstance(d, list) and d and all(isinstance(r, dict) and "config" in r and "end_to_end_s" in r
                                              for r in d)):
        return None
    rows = [[f"`{r['config']}`", str(r.get("batch_size", "-")), _sec(r.get("preprocess_s")), _sec(r.get("compile_s")),
             _sec(r.get("inference_s")), _sec(r.get("topk_metrics_s")), _sec(r.get("end_to_end_s")),
             _num((r.get("metrics") or {}).get("recall@20"), 5), _num((r.get("metrics") or {}).get("ndcg@20"), 5),
             _gib((r.get("memory") or {}).get("peak_rss_bytes"))] for r in d]
    return [{"family": "speed", "protocol": "holdout", "title": _rel(path) + " (Tables 5 and 6)",
             "text": _table(["config", "batch", "preprocess s", "compile s", "inference s", "top-k + metrics s",
                             "end to end s", "R@20", "N@20", "peak RSS GiB"], rows)}]


def read_serve(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.serve_load``: latency and throughput of ``bspm serve`` beside ``bspm recommend --users all``."""
    if not (isinstance(d, dict) and "preset" in d and ("load" in d or "mixed" in d or "reload" in d)):
        return None
    rows = [[f"`{r['kind']}`", str(r["concurrency"]), str(r["requests"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
             f"{r['throughput_rps']:,.0f}", f"{r['users_per_s']:,.0f}", json.dumps(r["statuses"])]
            for r in d.get("load", [])]
    text = _table(["kind", "concurrency", "requests", "p50 ms", "p99 ms", "requests/s", "users/s", "statuses"],
                  rows) if rows else ""
    every = d.get("recommend_all")
    if every:
        text += (f"\n`bspm recommend --users all`: {every['users']:,} users in {every['seconds']:.1f} s "
                 f"({every['users_per_s']:,.0f} users/s); server start {d.get('server_start_s', 0):.1f} s.\n")
    mixed = d.get("mixed")
    if mixed:
        text += (f"\nMixed load: {mixed['requests']:,} requests, {mixed['bad']:,} bad; statuses "
                 f"{json.dumps(mixed['statuses'])}; server RSS MiB {[round(x) for x in mixed['rss_mib']]}.\n")
    reload = d.get("reload")
    if reload:
        text += (f"\nReload under load: {reload['requests']:,} requests, statuses {json.dumps(reload['statuses'])}; "
                 f"reloads {json.dumps([(r['damaged'], r['status']) for r in reload.get('during', [])])} "
                 "(damaged folder, status).\n")
    return [{"family": "speed", "protocol": "holdout", "title": _rel(path) + " (bspm serve)", "text": text}]


def read_scale(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.scale``: synthetic power-law data of growing size."""
    if not (isinstance(d, dict) and isinstance(d.get("rows"), list) and d["rows"]
            and all(isinstance(r, dict) and "n_users" in r and "timings_s" in r for r in d["rows"])):
        return None
    rows = []
    for r in d["rows"]:
        t = r["timings_s"]
        rows.append([_num(r.get("n_users")), _num(r.get("n_items")), _num(r.get("n_interactions")),
                     str(r.get("batch_size", "-")), _sec(t.get("preprocess")),
                     _num(r.get("n_users_evaluated")) + (" (sampled)" if r.get("sampled") else ""),
                     _sec(t.get("inference_all_users")) + (" (extrapolated)" if r.get("sampled") else ""),
                     _sec(t.get("fit_and_score")), _gib((r.get("memory") or {}).get("peak_rss_bytes"))])
    growth = d.get("growth_exponent")
    note = f"\nGrowth exponent (fit + score against interactions): {growth:.2f}\n" if isinstance(growth, float) else ""
    return [{"family": "speed", "protocol": "holdout", "title": _rel(path) + " (scale)",
             "text": _table(["users", "items", "interactions", "batch", "preprocess s", "users scored",
                             "scoring all users s", "fit + score s", "peak RSS GiB"], rows) + note}]


def read_svd(path: Path, d: Any) -> list[dict[str, Any]] | None:
    """``benchmarks.svd``: truncated SVD solvers compared."""
    if not (isinstance(d, dict) and isinstance(d.get("solvers"), dict) and "rank" in d):
        return None
    rows = []
    for name, s in d["solvers"].items():
        extra = [v for v in s.values() if isinstance(v, dict) and "recall@20" in v]
        rows.append([name, _sec(s.get("seconds")), f"{s.get('max_residual', float('nan')):.1e}",
                     f"{s.get('principal_angle_vs_propack', float('nan')):.1e}",
                     (f"{_num(extra[0]['recall@20'], 5)} / {_num(extra[0].get('ndcg@20'), 5)}" if extra else "-")])
    shape = d.get("shape", ["?", "?"])
    title = f"{_rel(path)} (SVD, {shape[0]:,} x {shape[1]:,}, rank {d['rank']}, tol {d.get('tol')})"
    return [{"family": "speed", "protocol": "holdout", "title": title,
             "text": _table(["solver", "seconds", "max residual / s_1", "principal angle vs PROPACK",
                             "BSPM-EM R@20 / N@20"], rows)}]


def read_devices(path: Path, d: Any) -> list[dict[str, Any]] | None:
    if not (isinstance(d, dict) and isinstance(d.get("rows"), list) and d["rows"]
            and all(isinstance(r, dict) and "devices" in r for r in d["rows"])):
        return None
    rows = [[str(r["devices"]), _num(r.get("median_s"), 2), _num(r.get("speed_up"), 2),
             _num(r.get("identical_to_first"))] for r in d["rows"]]
    return [{"family": "speed", "protocol": "holdout", "title": _rel(path) + " (devices)",
             "text": _table(["devices", "scoring + top-20 s (median)", "speed-up", "identical to 1 device"], rows)}]


def read_kernels(path: Path, d: Any) -> list[dict[str, Any]] | None:
    if not (isinstance(d, dict) and isinstance(d.get("rows"), list) and d["rows"]
            and all(isinstance(r, dict) and "product" in r and "path" in r for r in d["rows"])):
        return None
    rows = [[r["product"], str(r.get("width", "-")), r["path"], _num(r.get("best_s"), 3),
             _num(r.get("gfma_per_s"), 1) if "gfma_per_s" in r else "-"] for r in d["rows"]]
    return [{"family": "speed", "protocol": "holdout", "title": _rel(path) + " (kernel paths)",
             "text": _table(["product", "chunk width", "path", "best s", "GFMA/s"], rows)}]


READERS: list[Callable[[Path, Any], list[dict[str, Any]] | None]] = [
    read_table4, read_tables, read_serve, read_run_record, read_trained, read_s_diff, read_giffcf_reference, read_giffcf_heads,
    read_scale, read_svd, read_devices, read_kernels,
]

FAMILIES = {
    "table4": ("gowalla-table4.md", "Gowalla: the BSPM paper's Table 4",
               "Records of the retired `benchmarks.table4` (now `bspm compare --suite gowalla-training-free "
               "--no-tune`): every configuration in its own `bspm run` process on Gowalla "
               "(LightGCN split, no validation file). Paper figures from the BSPM paper's Table 4."),
    "runs": ("runs.md", "Single runs (`bspm run --json`)",
             "Records written by `bspm run --json`, grouped by dataset and protocol. Records written before the "
             "protocol was stored get it derived from their own contents (a validation split, "
             "`refit_with_valid`), marked \"protocol derived\"."),
    "trained": ("trained.md", "Trained models (`benchmarks.trained`)",
                "Records of the retired `benchmarks.trained` (now `bspm compare`). One table per file and protocol: mean ± sd over the seeds the file holds. On Gowalla the "
                "validation split is carved from train; \"protocol A\" test is then scored from the history "
                "the model was trained on."),
    "s-diff": ("s-diff.md", "S-Diff on ML-1M (`benchmarks.s_diff`)",
               "Seeds, ablations, and BSPM on the same split; the paper's rows are from the S-Diff paper "
               "(Table 1, Table 3)."),
    "giffcf": ("giffcf.md", "GiffCF on ML-1M",
               "The reference code's checkpoint scored by `bspm_jax.GiffCF`, the `ml1m-giffcf` runs, and "
               "heads composed from two trained models."),
    "speed": ("speed.md", "Speed and scale",
              "Tables 5 and 6 (`benchmarks.tables`), `bspm serve` under load (`benchmarks.serve_load`), scale (`benchmarks.scale`), the truncated SVD "
              "(`benchmarks.svd`), devices (`benchmarks.devices`) and the kernel paths (`benchmarks.kernels`). "
              "Timings are of the machine named in each record (the 2-core VMs unless said otherwise)."),
}


def collect_results() -> tuple[dict[str, list[dict[str, Any]]], list[tuple[str, str]]]:
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in FAMILIES}
    skipped: list[tuple[str, str]] = []
    if not RESULTS.is_dir():
        return found, skipped
    for path in sorted(RESULTS.rglob("*.json"), key=lambda p: _rel(p), reverse=True):
        try:
            data = _load(path)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            skipped.append((_rel(path), f"not JSON: {type(err).__name__}"))
            continue
        for reader in READERS:
            try:
                items = reader(path, data)
            except Exception as err:  # a record of an unexpected shape: skipped, never fatal
                log.debug("results: %s: %s failed: %s", path, reader.__name__, err)
                items = None
            if items:
                for item in items:
                    item.setdefault("path", _rel(path))
                    found[item["family"]].append(item)
                break
        else:
            skipped.append((_rel(path), "no reader for its structure"))
    return found, skipped


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _merge_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items that carry one table row each (``header`` and ``row``) merged into one table per title."""
    out: list[dict[str, Any]] = []
    merged: dict[str, dict[str, Any]] = {}
    for item in items:
        if "row" not in item or "header" not in item:
            out.append(item)
            continue
        key = item["title"]
        if key not in merged:
            merged[key] = {**item, "rows": []}
            out.append(merged[key])
        merged[key]["rows"].append(item["row"])
    for item in merged.values():
        item["text"] = _table(item["header"], sorted(item["rows"]))
    return out


def _results_page(family: str, items: list[dict[str, Any]]) -> str:
    _, title, intro = FAMILIES[family]
    lines = [f"# {title}", "", "*Generated at build time from `benchmarks/results/` by `docs/hooks/bspm_docs.py`; "
             "files are listed newest first. Nothing on this page is typed by hand.*", "", intro, ""]
    if family == "runs":
        groups: dict[tuple[str, str], list[list[str]]] = {}
        for item in items:
            groups.setdefault((item["dataset"], item["protocol"]), []).append(item["row"])
        for (dataset, protocol), rows in sorted(groups.items()):
            lines += [f"## {dataset}, {protocol}", "", f"*{_cap(PROTOCOL_TEXT[protocol])}.*", "",
                      _table(["model"] + METRIC_HEAD + ["validation R@20", "preprocess s", "inference s", "record"],
                             rows), ""]
        return "\n".join(lines)
    for protocol in ("holdout", "A", "refit"):
        chosen = _merge_rows([i for i in items if i["protocol"] == protocol])
        if not chosen:
            continue
        lines += [f"## {_cap(PROTOCOL_TEXT[protocol].split(':')[0])}", "",
                  f"*{_cap(PROTOCOL_TEXT[protocol])}.*" if family != "speed" else
                  "*Timings; the metrics beside them are of the holdout protocol.*", ""]
        for item in chosen:
            title = item["title"] if item["title"].startswith("runs") else f"`{item['title']}`"
            lines += [f"### {title}", "", item["text"], ""]
    return "\n".join(lines)


def _results_index(found: dict[str, list[dict[str, Any]]], skipped: list[tuple[str, str]]) -> str:
    lines = ["# Results", "", "*Generated at build time from the JSON records in `benchmarks/results/`.*", "",
             "Every table on these pages holds the figures of one protocol; protocol A and refit figures are "
             "never in one table. The dated lab notes that explain the runs are in "
             "`benchmarks/LOG.md`; how to run each harness is in `benchmarks/README.md`.", "",
             "| page | tables |", "|---|---|"]
    for family, (page, title, _) in FAMILIES.items():
        lines.append(f"| [{title}]({page}) | {len(found[family])} |")
    lines += ["", "## Files skipped", "",
              "JSON files whose structure no reader understands (shown here, not an error):", ""]
    lines += [f"- `{name}`: {why}" for name, why in skipped] or ["- none"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- notebooks

def notebook_page(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    lang = ((nb.get("metadata") or {}).get("language_info") or {}).get("name", "python")
    parts = [f"*Rendered from `{_rel(path)}` (stored without outputs; the test suite executes it).*", ""]
    first_heading = None
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        if not src.strip():
            continue
        if cell.get("cell_type") == "markdown":
            if first_heading is None and src.lstrip().startswith("# "):
                first_heading = src
                parts.insert(0, src.strip() + "\n")
                continue
            parts.append(src.strip() + "\n")
        elif cell.get("cell_type") == "code":
            parts.append(f"```{lang}\n{src.rstrip()}\n```\n")
    if first_heading is None:
        parts.insert(0, f"# {path.stem}\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- CLI and presets

def cli_help() -> str:
    from bspm_jax.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        blocks = ["## `bspm --help`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, p in sub.choices.items():
            blocks += [f"## `bspm {name} --help`", "", "```text", p.format_help().rstrip(), "```", ""]
        return "\n".join(blocks)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def preset_table() -> str:
    rows = []
    for path in sorted(CONFIGS.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            log.warning("preset %s is not valid TOML: %s", path.name, err)
            continue
        model = (raw.get("model") or {}).get("name", "bspm")
        desc = " ".join(str(raw.get("description", "")).split())
        rows.append([f"`{path.stem}`", f"`{model}`", desc])
    return _table(["preset", "model", "description"], rows)


def _known_presets() -> set[str]:
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    with contextlib.suppress(Exception):
        from bspm_jax.config import PRESET_ALIASES

        names |= {old for old, new in PRESET_ALIASES.items() if new in names}
    return names



# ----------------------------------------------------------------------------- API reference

API_GROUPS = [
    ("models", "Models", "Every registered model (`--model NAME`, one file each in `bspm_jax/models/`), the registry "
                         "and the interface they share."),
    ("data", "Data", "Loaders and splits (`bspm_jax/data/`)."),
    ("ranking", "Recommend and evaluate", ""),
    ("evaluation", None, ""),
    ("experiment", None, ""),
    ("training", "Train and tune", ""),
    ("tuning", None, ""),
    ("config", "Configuration and presets", ""),
    ("errors", "Errors", ""),
    ("serial", None, ""),
]

BUILDING_BLOCKS = [
    "bspm_jax.models.base.AbstractTrainingFree", "bspm_jax.models.base.AbstractSpectralFilter",
    "bspm_jax.models.trained.AbstractTrainedRecommender",
    "bspm_jax.data.diffrec.load_diffrec", "bspm_jax.evaluation.protocol.PROTOCOLS",
    "bspm_jax.ranking.rank.rank_rows", "bspm_jax.spectral.normalize.normalize", "bspm_jax.spectral.svd.truncated_svd",
    "bspm_jax.spectral.spectrum.spectrum", "bspm_jax.spectral.spectrum.SpectrumCache",
    "bspm_jax.filtering.operators.AbstractOperator", "bspm_jax.filtering.operators.SparseMatrix",
    "bspm_jax.filtering.operators.Gram", "bspm_jax.filtering.operators.LowRank",
    "bspm_jax.filtering.filters.HeatBlur", "bspm_jax.filtering.filters.IdealBlur",
    "bspm_jax.filtering.filters.Sharpen", "bspm_jax.filtering.graph.ItemGraph", "bspm_jax.filtering.graph.build_graph",
    "bspm_jax.filtering.solvers.make_integrator", "bspm_jax.filtering.rows.SparseRows",
    "bspm_jax.diffusion.schedule.VPSchedule", "bspm_jax.diffusion.schedule.log_snr",
    "bspm_jax.tuning.gradient.tune_gradient", "bspm_jax.tuning.gradient.GradientSettings",
    "bspm_jax.serial.save_model", "bspm_jax.runtime.native.isa_paths", "bspm_jax.runtime.distributed.initialize",
]


def api_reference() -> str:
    """``:::`` blocks for every name in ``bspm_jax.__all__`` (read statically by griffe), grouped by package."""
    import griffe

    pkg = griffe.load("bspm_jax", search_paths=[str(ROOT)])
    names = [n for n in (pkg.exports or []) if not n.startswith("_")]
    groups: dict[str, list[str]] = {}
    for name in names:
        member = pkg.members.get(name)
        if member is None:
            log.warning("api: bspm_jax.__all__ names %s, which bspm_jax does not define", name)
            continue
        try:
            path = member.final_target.path if member.is_alias else member.path
        except Exception as err:  # an alias griffe cannot resolve: a broken import
            log.warning("api: bspm_jax.%s does not resolve: %s", name, err)
            continue
        top = path.split(".")[1] if path.count(".") >= 1 else ""
        groups.setdefault(top, []).append(path)
    out: list[str] = []
    current = None
    order = [g[0] for g in API_GROUPS]
    for top in order + sorted(set(groups) - set(order)):
        if top not in groups:
            continue
        title, intro = next(((t, i) for key, t, i in API_GROUPS if key == top), (top, ""))
        if title is not None and title != current:
            out += [f"## {title}", ""] + ([intro, ""] if intro else [])
            current = title
        elif title is None and current is None:
            out += [f"## {top}", ""]
        out += sum(([f"::: {path}", ""] for path in groups[top]), [])
    out += ["## Building blocks", "", "Not in `bspm_jax.__all__`: the main pieces behind the models and commands.", ""]
    for path in BUILDING_BLOCKS:
        try:
            pkg[path.split(".", 1)[1]]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            log.warning("api: the building block %s is not defined", path)
            continue
        out += [f"::: {path}", ""]
    return "\n".join(out)


def leaderboards_page() -> str:
    """Every results store (``results.sqlite``) under ``benchmarks/results/``: its leaderboard, each entry's settings
    as chosen, and the command that reproduces its first final run."""
    from bspm_jax.compare import read_store
    from bspm_jax.compare.leaderboard import leaderboard, protocol_text, to_markdown

    lines = ["# Leaderboards (`bspm compare`)", "",
             "*Generated at build time from the results stores (`results.sqlite`) under `benchmarks/results/`; "
             "nothing on this page is typed by hand.*", "",
             "Each section is one `bspm compare` run: one dataset, one protocol, stated above its table. Test "
             "figures are means ± sd over the trained models' seeds; times are of the machine named below each "
             "table.", ""]
    for path in sorted(RESULTS.rglob("results.sqlite"), key=_rel, reverse=True):
        try:
            meta, records = read_store(path)
        except Exception as err:  # a damaged or foreign file: listed, never fatal
            log.warning("leaderboards: %s skipped: %s", _rel(path), err)
            continue
        by_protocol: dict[str, list[Any]] = {}
        for r in records:
            if r.kind == "final":
                by_protocol.setdefault(r.protocol["name"], []).append(r)
        for protocol, finals in sorted(by_protocol.items()):  # one table per protocol, never two in one
            rows = leaderboard(finals, json.loads(meta.get("paper", "{}")))
            machine = finals[0].machine
            cpu = ", ".join(str(machine[k]) for k in ("cpu", "cpu_count", "device") if k in machine)
            lines += [f"## {finals[0].dataset.get('name', '')}, protocol {protocol}: `{_rel(path.parent)}`", "",
                      to_markdown(rows, protocol_text(finals), meta.get("reference", "")),
                      f"*{len(finals)} final runs; {sum(r.kind == 'trial' for r in records)} search trials in the "
                      f"store; bspm_jax {finals[0].version}; machine: {cpu}.*", "",
                      _table(["model", "settings chosen by", "command (first run)"],
                             [[row.model, row.chosen_by,
                               "`" + next(r.command for r in finals if r.label == row.model) + "`"] for row in rows]),
                      ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- mkdocs events

_GENERATED: dict[str, str] = {}


def on_files(files: Files, config: Any) -> Files:
    found, skipped = collect_results()
    pages = {"results/index.md": _results_index(found, skipped), "results/leaderboards.md": leaderboards_page()}
    for family, (page, _, _) in FAMILIES.items():
        pages[f"results/{page}"] = _results_page(family, found[family])
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        try:
            pages[f"examples/{nb.stem}.md"] = notebook_page(nb)
        except (OSError, ValueError) as err:
            log.info("notebook %s skipped: %s", nb.name, err)
    for uri, content in pages.items():
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, content=content))
    for png in sorted(FIGURES.glob("*.png")):
        uri = f"assets/figures/{png.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files


_PRESET_RE = re.compile(r"--preset[ =]([A-Za-z0-9][A-Za-z0-9_.-]*)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if "<!-- bspm:cli -->" in markdown:
        with contextlib.redirect_stderr(io.StringIO()):
            markdown = markdown.replace("<!-- bspm:cli -->", cli_help())
    if "<!-- bspm:api -->" in markdown:
        markdown = markdown.replace("<!-- bspm:api -->", api_reference())
    if "<!-- bspm:presets -->" in markdown:
        markdown = markdown.replace("<!-- bspm:presets -->", preset_table())
    if not page.file.src_uri.startswith(("results/", "examples/")):
        known = _known_presets()
        for name in sorted(set(_PRESET_RE.findall(markdown)) - known):
            if name.upper() == name or name in ("NAME", "P"):
                continue
            log.warning("%s: --preset %s names no shipped preset (bspm_jax/configs/)", page.file.src_uri, name)
    return markdown
