"""Fidelity gate: every method's greedy action tokens and un-normalised actions on a committed frame trace,
against a committed reference — catches executor and method regressions at any success rate, in seconds.

A reference folder holds ``trace.npz`` (real LIBERO frames) and ``fidelity.json``: per method, the tokens and
actions of each replayed step, plus the policy fingerprint they came from. Each method replays the trace as a
fresh episode (``reset`` with seed 0), exactly as ``bench profile`` does, so LAC's recovery draws are seeded.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import BenchError, reading
from bench.harness.registry import METHODS, POLICIES
from bench.harness.trace import TRACE_FILE, load_trace

REFERENCE_FILE = "fidelity.json"


@dataclass(frozen=True)
class Tolerance:
    """What counts as a change: any token flip beyond ``max_token_mismatch`` (a fraction of a method's tokens),
    or an action of an agreeing step that moved by more than ``action_atol`` (un-normalised units)."""

    max_token_mismatch: float = 0.0
    action_atol: float = 1e-5


def replay(policy: Any, frames: np.ndarray, instruction: str) -> dict[str, list]:
    """Greedy tokens and un-normalised env actions of each frame, the trace replayed as one fresh episode."""
    policy.reset(instruction, 0)
    tokens, actions = [], []
    for frame in frames:
        step = policy.act({"agentview_image": frame})
        if step.tokens is None:
            raise BenchError(f"the fidelity gate compares greedy action tokens; {policy.name} predicts an action "
                             "chunk (CogACT): its equivalence lives in tests/test_cogact.py")
        tokens.append([int(t) for t in step.tokens])
        actions.append([float(a) for a in step.action])
    return {"tokens": tokens, "actions": actions}


def method_names(methods: str) -> list[str]:
    names = [e.name for e in METHODS.entries()] if methods == "all" else [m for m in methods.split(",") if m]
    if not names:
        raise BenchError("--methods names no method: give 'all' or names like baseline,fastv")
    return [METHODS.resolve(n).name for n in names]


def replay_methods(policy_name: str, checkpoint: str | None, names: list[str], trace: Path,
                   device: str = "cpu", compiled: bool = False) -> tuple[dict[str, dict[str, list]], str]:
    """Replay the trace through each method; returns (results by method, policy fingerprint)."""
    from bench.harness.registry import build_method

    frames, instruction, suite = load_trace(trace)
    results, fingerprint = {}, ""
    for name in names:
        steering, _ = build_method(name, {})
        policy = POLICIES.load(policy_name)(policy_name, checkpoint, steering, suite, device=device,
                                            compiled=compiled)
        fingerprint = policy.fingerprint()
        results[name] = replay(policy, frames, instruction)
    return results, fingerprint


def record_reference(folder: Path, policy_name: str, checkpoint: str | None, methods: str, trace: Path) -> Path:
    """Write ``folder/fidelity.json`` (and copy the trace beside it unless it is already there)."""
    import shutil

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    local_trace = folder / TRACE_FILE
    source = trace / TRACE_FILE if trace.is_dir() else trace
    if source.resolve() != local_trace.resolve():
        shutil.copyfile(source, local_trace)
    results, fingerprint = replay_methods(policy_name, checkpoint, method_names(methods), local_trace)
    reference = {"policy": policy_name, "checkpoint": str(checkpoint or "embedded"), "fingerprint": fingerprint,
                 "trace": TRACE_FILE, "frames": len(next(iter(results.values()))["tokens"]),
                 "recorded_on": {"machine": platform.processor() or platform.machine(), "torch": torch.__version__},
                 "methods": results}
    path = folder / REFERENCE_FILE
    path.write_text(json.dumps(reference, indent=1) + "\n")
    return path


@dataclass
class MethodFidelity:
    method: str
    tokens: int
    token_mismatches: int
    steps_changed: int
    max_action_diff: float  # over steps whose 7 tokens agree
    agreement_with_baseline: float | None  # share of tokens equal to the full-compute model's (information)

    def failed(self, tol: Tolerance) -> bool:
        return self.token_mismatches > tol.max_token_mismatch * self.tokens or self.max_action_diff > tol.action_atol


def compare(reference: dict[str, list], current: dict[str, list], method: str,
            baseline: dict[str, list] | None) -> MethodFidelity:
    ref_t, cur_t = np.asarray(reference["tokens"]), np.asarray(current["tokens"])
    if ref_t.shape != cur_t.shape:
        raise BenchError(f"{method}: {cur_t.shape} tokens replayed, the reference has {ref_t.shape}")
    same_step = (ref_t == cur_t).all(axis=1)
    diff = np.abs(np.asarray(reference["actions"]) - np.asarray(current["actions"]))[same_step]
    agreement = float((cur_t == np.asarray(baseline["tokens"])).mean()) if baseline is not None else None
    return MethodFidelity(method, int(ref_t.size), int((ref_t != cur_t).sum()), int((~same_step).sum()),
                          float(diff.max()) if diff.size else 0.0, agreement)


def check_reference(folder: Path, tol: Tolerance, methods: str = "all", checkpoint: str | None = None,
                    compiled: bool = False) -> list[MethodFidelity]:
    """Replay the reference's trace through its methods (or a subset) and compare, method by method.

    With ``compiled`` the replay runs the compiled decode and prefill layers against the (eager) reference: the fast
    path's equivalence check."""
    path = folder / REFERENCE_FILE
    if not path.is_file():
        raise BenchError(f"no fidelity reference at {path} (record one with `bench fidelity --update`)")
    with reading(path, "fidelity reference"):
        reference = json.loads(path.read_text())
        recorded = reference["methods"]
    names = list(recorded) if methods == "all" else method_names(methods)
    missing = [n for n in names if n not in recorded]
    if missing:
        raise BenchError(f"{path} has no reference for {', '.join(missing)}; it has {', '.join(recorded)}")
    if checkpoint is None and reference["checkpoint"] != "embedded":
        checkpoint = reference["checkpoint"]
    current, fingerprint = replay_methods(reference["policy"], checkpoint, names, folder / reference["trace"],
                                          compiled=compiled)
    if fingerprint != reference["fingerprint"]:
        raise BenchError(f"the policy's weights changed (fingerprint {fingerprint}, reference "
                         f"{reference['fingerprint']}): re-record the reference with `bench fidelity --update`")
    baseline = current.get("baseline")
    return [compare(recorded[n], current[n], n, baseline) for n in names]
