"""Action agreement with the full-compute model, cache ratio and MACs, per method, on a recorded trace.

Every method sees the same real LIBERO frames (a trace recorded from a tiny-policy rollout); at each step
its 7 action tokens are compared with the full-compute model's tokens on the same frame.
Usage: python benchmarks/action_agreement.py [--trace DIR_OR_NPZ | --record 30] [--methods lac,vla-cache]
       [--lac-weights results/train/lac/lac.safetensors]   (candidate LAC modules for lac and lac-no-recovery)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.harness.openvla_policy import load_openvla_policy
from bench.harness.registry import build_method
from bench.harness.trace import load_trace, record_trace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path)
    ap.add_argument("--record", type=int, default=30)
    ap.add_argument("--methods", default="baseline,fastv,sparsevlm,vla-cache,lac,lac-selector-only,lac-no-recovery,lac-no-ratio-fit,"
                                         "lac-no-stage1,lac-language")
    ap.add_argument("--lac-weights", help="a .safetensors of LAC modules (bench train lac) instead of the shipped ones")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trace = args.trace or record_trace("libero_object", 0, args.record, Path(tmp) / "trace.npz")
        frames, instruction, suite = load_trace(trace)
    full, _ = build_method("baseline", {})
    reference = load_openvla_policy("tiny-openvla", None, full, suite)
    reference.reset(instruction, 0)
    ref_tokens = []
    for f in frames:
        ref_tokens.append(reference.act({"agentview_image": f}).tokens)
    print(f"{len(frames)}-frame trace of {suite} ('{instruction}'), tiny policy, CPU")
    print(f"{'method':<20}{'steps all 7 tokens equal':>26}{'tokens equal':>14}{'cache ratio mean':>18}"
          f"{'ratio p10/p50/p90':>20}{'paper MMACs':>13}")
    for name in args.methods.split(","):
        params = {"weights": args.lac_weights} if args.lac_weights and name in ("lac", "lac-no-recovery") else {}
        steering, _ = build_method(name, params)
        policy = load_openvla_policy("tiny-openvla", None, steering, suite)
        policy.reset(instruction, 0)
        same_step, same_tok, ratios, macs = [], [], [], []
        for f, ref in zip(frames, ref_tokens, strict=True):
            step = policy.act({"agentview_image": f})
            rec = step.record
            same_step.append(step.tokens == ref)
            same_tok.append(np.mean(np.asarray(step.tokens) == np.asarray(ref)))
            ratios.append(rec["cache_ratio"] + rec["visual_dropped_mean"] / 256)
            macs.append(rec["paper_prefill_macs"])
        p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
        print(f"{name:<20}{np.mean(same_step):26.1%}{np.mean(same_tok):14.1%}{np.mean(ratios):18.3f}"
              f"{f'{p10:.2f}/{p50:.2f}/{p90:.2f}':>20}{np.mean(macs) / 1e6:13.1f}")
    print("cache ratio = share of visual tokens not computed per layer (reused + dropped), mean over layers")


if __name__ == "__main__":
    main()
