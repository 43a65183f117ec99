"""Paper-convention prefill MACs per step for every method on a recorded LIBERO frame sequence.

1. Record a frame trace: the baseline tiny policy drives a real LIBERO episode (libero_object task 0,
   init state 0) for --steps policy steps; the agentview frames are kept.
2. Replay the trace through each method with the tiny policy (same frames for all methods) and read the
   executor's paper-convention counter and per-layer rows.
3. For OpenVLA-7B shapes (d = 4096, m = 11008, 32 layers; meta-device counter checked to give 1.867 T
   for the dense n = 285), replay each step's per-layer row counts with the 7B's typical 28 text tokens
   in place of the tiny tokenizer's.
Usage: python benchmarks/method_macs.py [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.core.flops import paper_prefill_macs
from bench.harness.openvla_policy import load_openvla_policy
from bench.harness.registry import build_method
from bench.harness.trace import load_trace, record_trace

METHODS = ("baseline", "fastv", "fastv-k3", "sparsevlm", "vla-cache", "vla-cache-importance")
INSTRUCTION_SUITE = "libero_object"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        frames, instruction, _ = load_trace(record_trace(INSTRUCTION_SUITE, 0, args.steps, Path(tmp) / "trace.npz"))
    print(f"trace: {len(frames)} frames of libero_object task 0 ('{instruction}'), tiny policy, CPU")
    print(f"{'method':<22}{'tiny paper MMACs':>18}{'7B paper TMACs':>16}{'7B vs dense':>12}{'visual computed':>17}{'cache ratio':>13}")
    dense = None
    for name in METHODS:
        steering, _ = build_method(name, {})
        policy = load_openvla_policy("tiny-openvla", None, steering, INSTRUCTION_SUITE)
        policy.reset(instruction, 0)
        text_tiny = len(policy.model.with_empty_token(policy.input_ids)) - 1
        tiny, big, comp, ratio = [], [], [], []
        for f in frames:
            r = policy.act({"agentview_image": f}).record
            rows = r["prefill_rows_per_layer"]
            assert paper_prefill_macs(rows, 64, 176) == r["paper_prefill_macs"]  # replay == executor's counter
            tiny.append(r["paper_prefill_macs"])
            big.append(paper_prefill_macs([n - text_tiny + 28 for n in rows], 4096, 11008))
            comp.append(r["visual_computed_mean"])
            ratio.append(r["cache_ratio"])
        mean_big = float(np.mean(big))
        dense = dense or mean_big
        print(f"{name:<22}{np.mean(tiny) / 1e6:18.1f}{mean_big / 1e12:16.3f}{mean_big / dense:12.1%}"
              f"{np.mean(comp):17.1f}{np.mean(ratio):13.3f}")
    print("(means over steps, first step included; 7B: n = rows computed per layer, text = 28 tokens)")


if __name__ == "__main__":
    main()
