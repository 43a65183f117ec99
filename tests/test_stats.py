"""Wilson and exact McNemar against statsmodels; the regression gate on constructed runs."""

import json

import pytest

from bench.stats import mcnemar_exact, paired_compare, wilson_interval
from tests.conftest import run_bench


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (42, 50), (430, 500), (500, 500), (1, 1)])
def test_wilson_matches_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-12)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (1, 0), (5, 1), (12, 3), (30, 28)])
def test_exact_mcnemar_matches_statsmodels(b, c):
    from statsmodels.stats.contingency_tables import mcnemar

    assert mcnemar_exact(b, c) == pytest.approx(mcnemar([[10, b], [c, 10]], exact=True).pvalue, abs=1e-12)


def test_paired_difference():
    a = [True] * 8 + [False] * 2
    b = [True] * 5 + [False] * 5
    pc = paired_compare(a, b)
    assert (pc.b, pc.c, pc.diff) == (3, 0, -0.3)
    assert pc.diff_low < -0.3 < pc.diff_high < 0


def write_run(path, successes, macs=1e9, errors=0):
    path.mkdir(parents=True)
    with open(path / "episodes.jsonl", "w") as f:
        for i, s in enumerate(successes):
            status = "error" if i < errors else "ok"
            f.write(json.dumps({"key": f"0:{i}", "success": s, "status": status,
                                "summary": {"paper_prefill_macs_mean": macs, "time_step_s_median": 0.1}}) + "\n")
    return path


def test_gate_fails_on_a_significant_drop_and_passes_on_noise(tmp_path):
    base = write_run(tmp_path / "base", [True] * 40)
    drop = write_run(tmp_path / "drop", [True] * 28 + [False] * 12)  # 12 discordant, p ≈ 0.0005
    noise = write_run(tmp_path / "noise", [True] * 38 + [False] * 2)  # p = 0.5
    r = run_bench("check", "--baseline", str(base / "episodes.jsonl"), "--candidate", str(drop))
    assert r.returncode == 1 and "significant drop" in r.stdout and "FAIL" in r.stdout
    r = run_bench("check", "--baseline", str(base), "--candidate", str(noise))
    assert r.returncode == 0 and "no regression" in r.stdout


def test_gate_fails_on_flops_regression_and_errors(tmp_path):
    base = write_run(tmp_path / "base", [True] * 10)
    heavier = write_run(tmp_path / "heavy", [True] * 10, macs=1.2e9)
    r = run_bench("check", "--baseline", str(base), "--candidate", str(heavier), "--max-flops-increase", "0.05")
    assert r.returncode == 1 and "paper prefill MACs +20.0%" in r.stdout
    broken = write_run(tmp_path / "broken", [True] * 10, errors=1)
    assert run_bench("check", "--baseline", str(base), "--candidate", str(broken)).returncode == 1


def test_gate_refuses_runs_that_are_not_comparable(tmp_path):
    base = write_run(tmp_path / "base", [True] * 10)
    short = write_run(tmp_path / "short", [True] * 5)
    r = run_bench("check", "--baseline", str(base), "--candidate", str(short))
    assert r.returncode == 2 and "lacks 5 of the baseline's episodes" in r.stdout
