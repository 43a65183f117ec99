#!/usr/bin/env bash
# The main job on the embedded default: a real LIBERO comparison on CPU with the embedded tiny policy.
# baseline, FastV, SparseVLM, VLA-Cache and LAC on the same libero_object episodes (OpenVLA protocol), a
# performance-mode profile on a recorded frame trace (OpenVLA, then CogACT), then tables and plots in reports/.
# Runs are resumable: rerunning skips finished episodes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
# Tasks 4 and 7, init states 0–1: the episodes where the embedded policy's successes lie (its card), so that
# a method that costs success shows it. Two Ray workers, one per core.
for method in baseline fastv sparsevlm vla-cache lac; do
  bench run --method "$method" --suite libero_object --tasks 4,7 --episodes-per-task 2 --executor ray --workers 2
done
bench profile --record 20 --method baseline,fastv,sparsevlm,vla-cache,lac --out reports/profile
# CogACT (diffusion action head) on the same frames: its tiny head is untrained (success would be 0 %), but where
# each method's savings land in a one-prefill + DiT step is real.
bench profile --trace reports/profile --policy tiny-cogact --method baseline,fastv,sparsevlm,vla-cache,lac \
  --out reports/profile_cogact
bench report results/runs --out reports --paper lac
