"""Reports from run directories: paper tables against golden files, plots written and non-empty."""

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.paper_report import write_paper_tables
from tests.conftest import FIXTURES, run_bench

GOLDEN = FIXTURES / "golden"


def fake_run(root: Path, method: str, suite: str, successes: list[bool], macs: float, prefill_s: float) -> Path:
    d = root / suite / "tiny-openvla" / method / f"h{method}{suite}"
    d.mkdir(parents=True)
    spec = {"suite": suite, "policy": "tiny-openvla", "method": method, "tasks": [0],
            "episodes_per_task": len(successes)}
    (d / "manifest.json").write_text(json.dumps({"spec": spec, "run_hash": d.name,
                                                 "policy": {"device": "cpu", "dtype": "fp32"}}))
    with open(d / "episodes.jsonl", "w") as f:
        for i, s in enumerate(successes):
            summary = {"paper_prefill_macs_mean": macs, "macs_total_mean": 2 * macs, "time_step_s_median": 0.1,
                       "time_prefill_s_median": prefill_s}
            f.write(json.dumps({"key": f"0:{i}", "success": s, "status": "ok", "steps": 10, "summary": summary}) + "\n")
    pd.DataFrame({"key": ["0:0"] * 3, "step": [0, 1, 2], "cache_ratio": [0.0, 0.2, 0.3],
                  "visual_computed_mean": [256, 200, 180], "macs_vision": [1e8] * 3, "macs_prefill": [macs] * 3,
                  "macs_decode": [1e6] * 3}).to_parquet(d / "steps.parquet")
    return d


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "baseline", "libero_spatial", [True] * 7 + [False] * 3, 7.7e8, 0.030)
    fake_run(root, "vla-cache", "libero_spatial", [True] * 6 + [False] * 4, 6.0e8, 0.020)
    fake_run(root, "baseline", "libero_object", [True] * 5 + [False] * 5, 7.7e8, 0.032)
    return root


@pytest.mark.parametrize("table", ["table1", "table2"])
def test_paper_tables_match_golden_files(runs, tmp_path, table):
    write_paper_tables("lac", [runs], tmp_path / "out", None, None)
    got = (tmp_path / "out" / f"lac_{table}.md").read_text()
    assert got == (GOLDEN / f"lac_{table}.md").read_text()


def test_missing_cells_stay_missing_and_imports_fill_them(runs, tmp_path):
    imported = tmp_path / "robot.csv"
    imported.write_text("table,row,column,value\ntable4,LAC,Success,38\n")
    write_paper_tables("lac", [runs], tmp_path / "out", None, imported)
    t4 = pd.read_csv(tmp_path / "out" / "lac_table4.csv")
    assert t4.loc[t4.method == "LAC", "Success (ours)"].item() == "38.0"
    assert t4.loc[t4.method == "OpenVLA", "Success (ours)"].item() == "—"
    t3 = pd.read_csv(tmp_path / "out" / "lac_table3.csv")
    assert (t3.filter(like="(ours)").drop(columns="prefill speed-up (ours)") == "—").all().all()
    tex = (tmp_path / "out" / "lac_table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "tab:table1" in tex


def test_report_command_writes_tables_and_plots(runs, tmp_path):
    out = tmp_path / "rep"
    r = run_bench("report", str(runs), "--out", str(out), "--paper", "lac")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("summary.md", "summary.csv", "summary.png", "success_by_suite.png", "macs_breakdown.png",
                 "cache_ratio_episode.png", "lac_table5.tex"):
        assert (out / name).stat().st_size > 1000 or name.endswith((".md", ".csv", ".tex")), name
    assert "70.0% [39.7%, 89.2%] (n=10)" in (out / "summary.md").read_text()


def test_report_renders_all_fail_and_all_succeed_runs(tmp_path):
    """0/50 and 50/50 put a Wilson bound exactly on the estimate; the error bars must not go negative."""
    root = tmp_path / "runs"
    fake_run(root, "baseline", "libero_object", [False] * 50, 7.7e8, 0.030)
    fake_run(root, "fastv", "libero_object", [True] * 50, 5.0e8, 0.020)
    fake_run(root, "vla-cache", "libero_object", [True] * 13, 6.0e8, 0.025)
    r = run_bench("report", str(root), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr + r.stdout
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert sorted(summary.success_rate) == [0.0, 1.0, 1.0]
    assert (tmp_path / "out" / "summary.png").stat().st_size > 0
