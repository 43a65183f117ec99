"""Summaries of finished runs: one row per run, success with Wilson CI, cost per step. Never re-runs models."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from bench.analysis.stats import wilson_interval
from bench.core import records as R
from bench.core.errors import BenchError, reading
from bench.harness.spec import episode_key, planned_keys
from bench.harness.store import MANIFEST, latest_by_key, read_episodes, read_jsonl, read_manifest
from envs.simpler_matrix import MATRICES, aggregate


def find_runs(paths: list[Path]) -> list[Path]:
    runs: list[Path] = []
    for p in paths:
        if not p.exists():
            raise BenchError(f"{p} does not exist")
        runs += [p] if (p / MANIFEST).exists() else sorted(m.parent for m in p.rglob(MANIFEST))
    if not runs:
        raise BenchError(f"no run directories (with {MANIFEST}) under {', '.join(map(str, paths))}")
    return runs


def summarize_run(run_dir: Path) -> dict:
    manifest = read_manifest(run_dir)
    with reading(run_dir, "run directory (manifest.json with a spec, episodes.jsonl records)"):
        return _summary(manifest, manifest["spec"], run_dir)


def _summary(manifest: dict, spec: dict, run_dir: Path) -> dict:
    planned = {episode_key(t, i) for t, i in planned_keys(spec)}
    records = [r for k, r in latest_by_key(read_episodes(run_dir)).items() if k in planned]
    ok = [r for r in records if r[R.STATUS] == "ok"]
    n, wins = len(records), sum(r[R.SUCCESS] for r in records)
    lo, hi = wilson_interval(wins, n)

    def med(step_field: str, stat: str) -> float:
        field = R.summary_field(step_field, stat)
        vals = [r[R.SUMMARY][field] for r in ok if field in r.get(R.SUMMARY, {})]
        return float(pd.Series(vals).median()) if vals else float("nan")

    return {
        "suite": spec["suite"], "policy": spec["policy"], "method": spec["method"], "run": manifest["run_hash"],
        "episodes": n, "planned": len(planned), "errors": n - len(ok), "successes": wins,
        "success_rate": wins / n if n else float("nan"), "ci95_low": lo, "ci95_high": hi,
        "mean_steps": float(pd.Series([r[R.STEPS] for r in ok]).mean()) if ok else float("nan"),
        "step_ms_median": 1e3 * med(R.TIME_STEP_S, "median"),
        "prefill_ms_median": 1e3 * med(R.TIME_PREFILL_S, "median"),
        "paper_prefill_GMACs": med(R.PAPER_PREFILL_MACS, "mean") / 1e9,
        "total_GMACs": med(R.MACS_TOTAL, "mean") / 1e9,
        "device": manifest["policy"].get("device"), "dtype": manifest["policy"].get("dtype"),
        "aggregate_success": _suite_score(spec["suite"], records),
    }


def _suite_score(suite: str, records: list[dict]) -> float | None:
    """SIMPLER's score (mean of variant means, then of the tasks) where the suite defines one; else None."""
    if suite not in MATRICES:
        return None
    results = {(r[R.TASK_ID], r[R.INIT_STATE_INDEX]): bool(r[R.SUCCESS]) for r in records}
    return aggregate(suite, results)["overall"]


def write_summary(paths: list[Path], out: Path, console: Console) -> pd.DataFrame:
    runs = find_runs(paths)
    df = pd.DataFrame([summarize_run(r) for r in runs]).sort_values(["suite", "policy", "method"])
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "summary.csv", index=False)
    view = df.assign(
        success=[f"{r.success_rate:.1%} [{r.ci95_low:.1%}, {r.ci95_high:.1%}] (n={r.episodes})" for r in df.itertuples()]
    )[["suite", "policy", "method", "success", "errors", "mean_steps", "step_ms_median", "prefill_ms_median",
       "paper_prefill_GMACs", "total_GMACs", "device", "run"]]
    (out / "summary.md").write_text(
        "Success: rate [Wilson 95% CI] (n episodes). Latencies: median over episodes of per-episode median "
        "per-step wall time (end-to-end policy step; prefill = LLM decoder-layer loop). MACs: per step; "
        "paper = prefill decoder layers only (4nd²+2n²d+3ndm).\n\n" + view.to_markdown(index=False, floatfmt=".2f") + "\n"
    )
    _plot(df, out / "summary.png")
    _more_plots(df, runs, out)
    table = Table(*view.columns[:-2])
    for row in view.itertuples(index=False):
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row[:-2]])
    console.print(table)
    console.print(f"wrote {out / 'summary.md'}, {out / 'summary.csv'}, {out / 'summary.png'}")
    return df


def _plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for (suite, method), g in df.groupby(["suite", "method"]):
        yerr = [100 * (g.success_rate - g.ci95_low), 100 * (g.ci95_high - g.success_rate)]
        ax.errorbar(g.step_ms_median, 100 * g.success_rate, yerr=yerr, fmt="o", capsize=4, label=f"{suite} · {method}")
    ax.set_xlabel("median policy step latency (ms, end-to-end)")
    ax.set_ylabel("success rate (%) with Wilson 95% CI")
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _more_plots(summary: pd.DataFrame, runs: list[Path], out: Path) -> None:
    from bench.analysis.plots import cache_ratio_over_episode, mac_breakdown, per_suite_bars

    per_suite_bars(summary, out / "success_by_suite.png")
    means, series = {}, {}
    for run in runs:
        manifest = read_manifest(run)
        label = f"{manifest['spec']['method']} · {manifest['spec']['suite']}"
        steps = run / "steps.parquet"
        if not steps.exists():
            continue
        df = pd.read_parquet(steps)
        means[label] = df[[c for c in df.columns if c.startswith(R.macs_field("")) and c != R.MACS_TOTAL]].mean()
        first = df[df.key == df.key.iloc[0]]
        if R.CACHE_RATIO in first and R.VISUAL_COMPUTED_MEAN in first:
            series[label] = first
    if means:
        mac_breakdown(pd.DataFrame(means).T, out / "macs_breakdown.png")
    if series:
        cache_ratio_over_episode(series, out / "cache_ratio_episode.png")


def summarize_expert_sweep(path: Path) -> pd.DataFrame:
    """Per-task success with Wilson 95 % CIs and median steps of successes, plus an 'all' row."""
    df = pd.DataFrame(read_jsonl(path))
    rows = []
    for key, g in [*df.groupby("task_id"), ("all", df)]:
        k, n = int(g["success"].sum()), len(g)
        lo, hi = wilson_interval(k, n)
        steps = g.loc[g["success"], "steps"]
        rows.append({"task_id": key, "task": g["task"].iloc[0] if key != "all" else "all", "success": k, "n": n,
                     "rate": k / n, "ci_low": lo, "ci_high": hi,
                     "median_steps": float(steps.median()) if len(steps) else float("nan")})
    return pd.DataFrame(rows)
