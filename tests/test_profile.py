"""Performance mode on a small recorded trace: percentiles, MACs, speed-ups written for every method."""

import json

import numpy as np

from tests.conftest import run_bench


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
        assert x["prefill_roofline_ms"] > 0
    assert result["context"]["batch_size"] == 1 and result["context"]["frames"] == 4


def test_profile_random_weights_and_missing_trace(tmp_path, frames):
    r = run_bench("profile", "--method", "baseline", "--out", str(tmp_path))
    assert r.returncode == 2 and "--record N" in r.stdout
    np.savez_compressed(tmp_path / "trace.npz", frames=frames, instruction="x", suite="libero_object", task_id=0)
    r = run_bench("profile", "--trace", str(tmp_path / "trace.npz"), "--method", "baseline", "--random-weights",
                  "--warmup", "0", "--repeat", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stdout
    assert json.loads((tmp_path / "o" / "profile.json").read_text())["context"]["weights"] == "random"
