"""Wilson and exact McNemar against statsmodels; the regression gate on constructed runs."""

import json

import pytest

from bench.analysis.stats import mcnemar_exact, paired_compare, wilson_interval
from tests.conftest import run_bench


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (42, 50), (430, 500), (500, 500), (1, 1)])
def test_wilson_matches_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-12)


def test_wilson_contains_the_estimate_for_every_k_n_up_to_500():
    """Exhaustive property: for every n ≤ 500 and 0 ≤ k ≤ n, 0 ≤ lo ≤ k/n ≤ hi ≤ 1 (0/50 and 10/10 broke it)."""
    bad = []
    for n in range(1, 501):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            if not 0.0 <= lo <= k / n <= hi <= 1.0:
                bad.append((k, n, lo, hi))
    assert not bad, f"{len(bad)} intervals exclude the estimate, e.g. {bad[:3]}"
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


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


SPEC = {"suite": "libero_object", "tasks": [0], "episodes_per_task": 10, "max_steps": 280, "policy": "tiny-openvla",
        "policy_fingerprint": "f00d", "method": "baseline", "method_params": {}, "seed": 7,
        "protocol": {"max_steps": 280, "wait_steps": 10, "env_seed": 0, "device": "cpu", "dtype": "fp32"}}


def write_run(path, successes, macs=1e9, errors=0, **spec_changes):
    path.mkdir(parents=True)
    spec = {**SPEC, **spec_changes}
    (path / "manifest.json").write_text(json.dumps({"spec": spec}))
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


@pytest.mark.parametrize(("change", "field"), [
    ({"suite": "libero_spatial"}, "suite"), ({"max_steps": 30}, "max_steps"),
    ({"policy_fingerprint": "beef"}, "policy_fingerprint"), ({"seed": 8}, "seed"),
    ({"protocol": {**SPEC["protocol"], "wait_steps": 0}}, "protocol.wait_steps"),
])
def test_compare_and_check_refuse_incomparable_specs(tmp_path, change, field):
    base = write_run(tmp_path / "base", [False] * 10)
    other = write_run(tmp_path / "other", [False] * 10, **change)
    for args in (("compare", str(base), str(other)), ("check", "--baseline", str(base), "--candidate", str(other))):
        r = run_bench(*args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "not comparable" in r.stdout and f"{field}:" in r.stdout and "Traceback" not in r.stderr


def test_method_device_and_dtype_may_differ(tmp_path):
    base = write_run(tmp_path / "base", [True] * 10)
    fast = write_run(tmp_path / "fast", [True] * 10, method="fastv", method_params={"k": 2},
                     protocol={**SPEC["protocol"], "device": "cuda", "dtype": "bf16"})
    assert run_bench("compare", str(base), str(fast)).returncode == 0
    assert run_bench("check", "--baseline", str(base), "--candidate", str(fast)).returncode == 0


def test_runs_without_a_manifest_are_refused(tmp_path):
    base = write_run(tmp_path / "base", [True] * 10)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "episodes.jsonl").write_text((base / "episodes.jsonl").read_text())
    r = run_bench("compare", str(base), str(bare))
    assert r.returncode == 2 and "no manifest.json" in r.stdout
