"""Performance mode on a small recorded trace: percentiles, MACs, speed-ups written for every method."""

import json

import numpy as np
import pytest

from bench.cli.profile import build_policy
from bench.harness.trace import load_trace
from tests.conftest import ROOT, run_bench


def test_profile_replays_a_trace_through_methods(tmp_path, frames):
    trace = tmp_path / "trace.npz"
    np.savez_compressed(trace, frames=np.concatenate([frames, frames]), instruction="put the bowl on the plate",
                        suite="libero_spatial", task_id=0)
    r = run_bench("profile", "--trace", str(tmp_path), "--method", "baseline,fastv,vla-cache", "--warmup", "1",
                  "--repeat", "1", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads((tmp_path / "out" / "profile.json").read_text())
    by = {x["method"]: x for x in result["results"]}
    assert set(by) == {"baseline", "fastv", "vla-cache"}
    assert by["fastv"]["paper_prefill_GMACs"] < by["baseline"]["paper_prefill_GMACs"]
    for x in by.values():
        assert x["steps"] == 4 and x["prefill_p50_ms"] > 0 and x["prefill_p50_ms"] <= x["prefill_p99_ms"]
        for region in ("vision", "prefill", "decode", "step"):  # a bound and measured/bound for every region
            assert x[f"{region}_roofline_ms"] > 0 and x[f"{region}_measured_over_roofline"] > 0
        assert x["step_roofline_ms"] >= x["prefill_roofline_ms"] + x["decode_roofline_ms"]
        assert x["host_reads_harness"] == 0 and x["host_reads_model"] == 2  # the tokens and the step's books
    assert by["baseline"]["host_reads_method"] == 0 and by["baseline"]["paper_macs_ratio"] == 1.0
    assert "timing conventions" in r.stdout and "roofline by region" in r.stdout
    assert result["context"]["batch_size"] == 1 and result["context"]["frames"] == 4


def test_profile_random_weights_and_missing_trace(tmp_path, frames):
    r = run_bench("profile", "--method", "baseline", "--out", str(tmp_path))
    assert r.returncode == 2 and "--record N" in r.stdout
    np.savez_compressed(tmp_path / "trace.npz", frames=frames, instruction="x", suite="libero_object", task_id=0)
    r = run_bench("profile", "--trace", str(tmp_path / "trace.npz"), "--method", "baseline", "--random-weights",
                  "--warmup", "0", "--repeat", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stdout
    assert json.loads((tmp_path / "o" / "profile.json").read_text())["context"]["weights"] == "random"


@pytest.mark.parametrize("method", ["baseline", "fastv", "sparsevlm", "vla-cache"])
def test_eager_attention_convention_gives_the_same_actions(method):
    """`bench profile --attention eager` (the papers' timing convention) computes the same policy: identical greedy
    tokens over a replayed trace (plain causal prefill, pruned and reused rows, per-layer decode positions)."""
    frames, instruction, suite = load_trace(ROOT / "results" / "reference" / "fidelity" / "trace.npz")
    tokens = {}
    for attention in ("sdpa", "eager"):
        policy = build_policy("tiny-openvla", method, None, False, suite, "cpu", "fp32")
        policy.model.language_model.set_attention(attention)
        assert policy.describe()["attention"] == attention
        policy.reset(instruction, 0)
        tokens[attention] = [policy.act({"agentview_image": f}).tokens for f in frames[:6]]
    assert tokens["eager"] == tokens["sdpa"]
