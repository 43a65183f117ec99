"""Fidelity gate: a reference recorded on a frame trace passes unchanged and fails on a perturbed executor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.harness.fidelity import REFERENCE_FILE, Tolerance, check_reference, record_reference
from tests.conftest import FIXTURES, run_bench

METHODS = "baseline,fastv,vla-cache,lac"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fidelity")
    frames = np.load(FIXTURES / "libero_frames.npz")["frames"]
    trace = folder / "source.npz"
    np.savez_compressed(trace, frames=np.concatenate([frames, frames[::-1], frames]),
                        instruction="pick up the alphabet soup and place it in the basket", suite="libero_object")
    record_reference(folder, "tiny-openvla", None, METHODS, trace)
    return folder


def test_unchanged_executor_passes_exactly(reference):
    results = check_reference(reference, Tolerance())
    assert [r.method for r in results] == METHODS.split(",")
    for r in results:
        assert r.tokens == 6 * 7 and r.token_mismatches == 0 and r.max_action_diff == 0.0, r
        assert not r.failed(Tolerance())
    assert results[0].agreement_with_baseline == 1.0


def test_perturbed_executor_fails(reference, monkeypatch):
    """RoPE frequencies 10 % off (a misread rope_theta, like the eps default this project once had): greedy tokens
    change and the gate says so. (A position shift would not do: RoPE depends only on relative positions.)"""
    import bench.core.models.llama as llama

    table = llama.rope_table
    monkeypatch.setattr(llama, "rope_table", lambda d, theta, n, device: table(d, 1.1 * theta, n, device))
    results = check_reference(reference, Tolerance())
    assert any(r.failed(Tolerance()) for r in results)
    assert sum(r.token_mismatches for r in results) > 0


def test_cli_reports_and_refuses_a_changed_policy(reference):
    r = run_bench("fidelity", "--reference", str(reference), "--methods", "baseline,lac", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lac" in r.stdout and "fidelity ok" in r.stdout
    data = json.loads((reference / REFERENCE_FILE).read_text())
    data["fingerprint"] = "0000"
    (reference / REFERENCE_FILE).write_text(json.dumps(data))
    r = run_bench("fidelity", "--reference", str(reference), timeout=300)
    assert r.returncode == 2 and "weights changed" in r.stdout
