#!/usr/bin/env bash
# The main job on the embedded default: a real LIBERO comparison on CPU with the embedded tiny policy.
# Runs are resumable (rerunning skips finished episodes); tables and plots go to reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
for suite in libero_object libero_spatial; do
  bench run --method baseline --suite "$suite" --tasks 0,1 --episodes-per-task 2
done
bench report results/runs --out reports
