"""Tiny-preset policy step latency on this machine, split into preprocess / vision / prefill / decode.

Replays real LIBERO frames (tests/fixtures) through the embedded tiny policy at batch size 1 with warm-up,
and prints medians and p90 per region (end-to-end step = all regions + adapter bookkeeping).
Usage: python benchmarks/policy_latency.py [--steps 100] [--warmup 10] [--device cpu] [--dtype fp32] [--compile]
(with --compile the warm-up includes compiling the decode step and the prefill layers, tens of seconds on CPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.harness.openvla_policy import load_openvla_policy
from methods.baseline import Baseline

FRAMES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "libero_frames.npz"
REGIONS = ("step", "preprocess", "vision", "prefill", "decode")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the decode step and the prefill layers")
    args = ap.parse_args()
    frames = np.load(FRAMES)["frames"]
    policy = load_openvla_policy("tiny-openvla", None, Baseline(), "libero_object", args.device, args.dtype,
                                 compiled=args.compile)
    policy.reset("pick up the alphabet soup and place it in the basket", 0)
    rows = []
    for i in range(args.warmup + args.steps):
        row = policy.act({"agentview_image": frames[i % len(frames)]}).record
        if i >= args.warmup:
            rows.append(row)
    print(f"tiny-openvla, {args.device} {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps after {args.warmup} warm-up, {policy.execution}")
    print(f"{'region':<11}{'p50 ms':>9}{'p90 ms':>9}{'mean ms':>9}")
    for region in REGIONS:
        v = 1e3 * np.array([r[f"time_{region}_s"] for r in rows])
        print(f"{region:<11}{np.median(v):9.2f}{np.percentile(v, 90):9.2f}{v.mean():9.2f}")
    r = rows[-1]
    print(f"MACs per step: total {r['macs_total'] / 1e9:.3f} G, paper prefill {r['paper_prefill_macs'] / 1e9:.3f} G")


if __name__ == "__main__":
    main()
