"""Episodes per minute with 1 vs 2 Ray workers (tiny policy, real LIBERO, CPU).

Throughput = episodes / (last finish − first start), i.e. steady state without Ray and actor start-up;
the whole command's wall time is printed too. Usage: python benchmarks/ray_scaling.py [--episodes 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(workers: int, episodes: int, max_steps: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        args = ["run", "--suite", "libero_object", "--tasks", "0,1", "--episodes-per-task", str(episodes),
                "--max-steps", str(max_steps), "--executor", "ray", "--workers", str(workers), "--out", out]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", *args], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        (f,) = list(Path(out).rglob("episodes.jsonl"))
        recs = [json.loads(x) for x in f.read_text().splitlines()]
    span = max(r["finished_at"] for r in recs) - min(r["started_at"] for r in recs)
    return 60 * len(recs) / span, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=3, help="per task; two tasks")
    ap.add_argument("--max-steps", type=int, default=40)
    args = ap.parse_args()
    results = {w: run(w, args.episodes, args.max_steps) for w in (1, 2)}
    for w, (epm, wall) in results.items():
        print(f"{w} worker(s): {epm:.2f} episodes/min steady state; command wall {wall:.1f} s "
              f"(2 tasks × {args.episodes} episodes × {args.max_steps} steps)")
    print(f"speed-up 2 vs 1 workers: {results[2][0] / results[1][0]:.2f}× (steady state), "
          f"{results[1][1] / results[2][1]:.2f}× (wall)")


if __name__ == "__main__":
    main()
