#!/usr/bin/env bash
# Install, lint, and run the whole test suite (real LIBERO episodes included; GPU tests skip without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check bench methods envs tests scripts benchmarks
.venv/bin/python -m pytest -q "$@"
