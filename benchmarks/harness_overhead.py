"""Harness overhead per policy step on the real simulator: time in the step loop outside env.step and
the policy, and the run store's per-episode bookkeeping. Target: ≤ 5 % of a step.

Usage: python benchmarks/harness_overhead.py [--episodes 3] [--max-steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness.manifest import environment
from bench.harness.openvla_policy import load_openvla_policy
from bench.harness.runner import execute
from bench.harness.spec import RunSpec
from bench.harness.store import RunStore, read_episodes, run_dir_for
from envs.libero import LiberoSuite
from methods.baseline import Baseline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=40)
    args = ap.parse_args()
    suite = LiberoSuite("libero_object")
    policy = load_openvla_policy("tiny-openvla", None, Baseline(), "libero_object")
    spec = RunSpec("libero_object", (0,), args.episodes, args.max_steps, "tiny-openvla", policy.fingerprint(), "baseline")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        store = RunStore(run_dir_for(Path(out), spec))
        execute(spec, suite, policy, store, {"spec": spec.to_dict()}, environment())
        store.close()
        run_wall = time.perf_counter() - t0
        recs = read_episodes(run_dir_for(Path(out), spec))
    steps = sum(r["steps"] for r in recs)
    env_s = sum(r["env_time_s"] for r in recs)
    pol_s = sum(r["policy_time_s"] for r in recs)
    loop_s = sum(r["harness_time_s"] for r in recs)
    episode_s = sum(r["wall_time_s"] for r in recs)
    step_s = (env_s + pol_s + loop_s) / steps
    print(f"{len(recs)} episodes × {args.max_steps} policy steps, libero_object task 0, tiny policy, CPU")
    print(f"per step: env.step {1e3 * env_s / steps:.1f} ms | policy {1e3 * pol_s / steps:.1f} ms | "
          f"harness loop {1e3 * loop_s / steps:.3f} ms ({loop_s / steps / step_s:.2%} of a step)")
    per_ep = [r["harness_time_s"] / r["steps"] * 1e3 for r in recs]
    print(f"harness loop per step, median over episodes: {statistics.median(per_ep):.3f} ms")
    store_s = run_wall - episode_s  # env construction is inside task() calls, outside episodes
    print(f"outside episodes (env build, store writes, manifest): {store_s:.2f} s for the run "
          f"({store_s / steps * 1e3:.1f} ms per step amortised, dominated by building the MuJoCo env once per task)")


if __name__ == "__main__":
    main()
