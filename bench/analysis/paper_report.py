"""The paper's tables regenerated from runs: our value beside the paper's, missing cells left missing.

A table spec (bench/analysis/report_specs/<paper>.yaml) maps rows to methods and columns to (suite, metric). Our cell
is filled from the run of that (policy, method, suite) with the most finished episodes; the paper's
number is stored data. Imported results (e.g. a real robot) fill cells through a CSV of
``table,row,column,value``. Nothing is re-run and nothing is invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.analysis.report import find_runs, summarize_run
from bench.core.errors import BenchError

SPECS = Path(__file__).parent / "report_specs"
MISSING = "—"


@dataclass
class Cell:
    ours: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None

    def text(self, metric: str) -> str:
        if self.ours is None:
            return MISSING
        if metric == "success" and self.n is not None and self.low is not None:
            return f"{100 * self.ours:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}] n={self.n}"
        if metric in ("success", "success_avg"):  # an average, or an imported number without episodes
            return f"{100 * self.ours:.1f}" + (f" n={self.n}" if self.n is not None else "")
        return f"{self.ours:.4g}" if metric == "paper_tmacs" else f"{self.ours:.2f}"


def load_spec(paper: str) -> dict[str, Any]:
    path = SPECS / f"{paper}.yaml"
    if not path.exists():
        raise BenchError(f"no paper spec {paper!r}; known: {', '.join(p.stem for p in SPECS.glob('*.yaml'))}")
    return yaml.safe_load(path.read_text())


def index_runs(paths: list[Path]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(policy, method, suite) → summary of the run with the most finished episodes."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in find_runs(paths):
        s = summarize_run(run)
        key = (s["policy"], s["method"], s["suite"])
        if key not in best or s["episodes"] > best[key]["episodes"]:
            best[key] = s
    return best


def cell_for(runs: dict, policy: str, method: str, column: dict[str, Any]) -> Cell:
    metric = column["metric"]
    if metric == "success_avg":
        found = [runs.get((policy, method, s)) for s in column["suites"]]
        return Cell(sum(r["success_rate"] for r in found) / len(found)) if all(found) else Cell(None)
    if "suite" not in column:  # a cost column over the whole table: mean over the suites that have runs
        cells = [cell_for(runs, policy, method, {**column, "suite": s}) for s in column["suites"]]
        vals = [c.ours for c in cells if c.ours is not None]
        return Cell(sum(vals) / len(vals) if vals else None)
    run = runs.get((policy, method, column["suite"]))
    if run is None or not run["episodes"]:
        return Cell(None)
    if metric == "success" and run.get("aggregate_success") is not None:  # SIMPLER: mean of variant means, no CI
        return Cell(run["aggregate_success"], n=run["episodes"])
    if metric == "success":
        return Cell(run["success_rate"], run["ci95_low"], run["ci95_high"], run["episodes"])
    value = {"paper_tmacs": run["paper_prefill_GMACs"] / 1e3, "prefill_ms": run["prefill_ms_median"]}[metric]
    return Cell(None if pd.isna(value) else float(value))


def build_table(table: dict[str, Any], runs: dict, policy: str, imported: pd.DataFrame | None) -> pd.DataFrame:
    out = []
    suites = sorted({c["suite"] for c in table["columns"] if "suite" in c})
    ms_column = {"metric": "prefill_ms", "suites": suites}
    base_ms = cell_for(runs, policy, table["rows"][0]["method"], ms_column).ours
    for row in table["rows"]:
        record: dict[str, str] = {"method": row["label"]}
        for col, paper_value in zip(table["columns"], row["paper"] + [None] * len(table["columns"]), strict=False):
            cell = cell_for(runs, policy, row["method"], col)
            if imported is not None:
                hit = imported[(imported.table == table["id"]) & (imported.row == row["label"]) &
                               (imported.column == col["label"])]
                if len(hit):
                    cell = Cell(float(hit.value.iloc[0]) / (100 if col["metric"] == "success" else 1))
            paper_text = MISSING if paper_value is None else f"{paper_value:g}"
            record[f"{col['label']} (ours)"] = cell.text(col["metric"])
            record[f"{col['label']} (paper)"] = paper_text
        ours_ms = cell_for(runs, policy, row["method"], ms_column).ours
        record["prefill speed-up (ours)"] = f"{base_ms / ours_ms:.2f}×" if base_ms and ours_ms else MISSING
        out.append(record)
    return pd.DataFrame(out)


def _with_table_suites(table: dict[str, Any]) -> dict[str, Any]:
    """Columns without a suite (table-wide costs) average over the table's suites."""
    suites = [c["suite"] for c in table["columns"] if "suite" in c]
    table["columns"] = [c if "suite" in c or "suites" in c else {**c, "suites": suites} for c in table["columns"]]
    return table


def write_paper_tables(paper: str, paths: list[Path], out: Path, policy: str | None,
                       imported_csv: Path | None) -> list[Path]:
    spec = load_spec(paper)
    runs = index_runs(paths)
    imported = pd.read_csv(imported_csv) if imported_csv else None
    policies = {k[0] for k in runs}
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for table in map(_with_table_suites, spec["tables"]):
        who = policy or (next(iter(policies)) if len(policies) == 1 else table["policy"])
        df = build_table(table, runs, who, imported)
        stem = out / f"{paper}_{table['id']}"
        caption = (f"{table['title']}. Ours: policy {who}; success % [Wilson 95% CI] n=episodes; TFLOPs = "
                   f"paper-convention prefill T MACs; ms = median LLM-prefill time. Paper: {spec['paper']}.")
        stem.with_suffix(".md").write_text(f"**{table['title']}** — ours: `{who}`\n\n"
                                           + df.to_markdown(index=False) + f"\n\n{caption}\n")
        df.to_csv(stem.with_suffix(".csv"), index=False)
        stem.with_suffix(".tex").write_text(df.to_latex(index=False, caption=caption, label=f"tab:{table['id']}"))
        written += [stem.with_suffix(s) for s in (".md", ".csv", ".tex")]
    return written
