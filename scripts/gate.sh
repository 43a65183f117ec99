#!/usr/bin/env bash
# Success-rate regression gate on a fixed small episode set of the embedded tiny policy.
# Runs the reference spec afresh and compares it with the committed reference run (paired, exact McNemar),
# also failing if paper-convention prefill MACs grow by more than 2 % or any episode errors.
# `bash scripts/gate.sh --update` replaces the reference (after an intended change, e.g. a retrained policy).
set -euo pipefail
cd "$(dirname "$0")/.."
REF=results/reference/tiny-openvla_libero_object_baseline
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
.venv/bin/bench run --method baseline --suite libero_object --tasks 0,1 --episodes-per-task 2 --max-steps 30 --out "$OUT"
CAND=$(ls -d "$OUT"/libero_object/tiny-openvla/baseline/*)
if [ "${1:-}" = "--update" ]; then
  rm -rf "$REF" && mkdir -p "$REF" && cp "$CAND"/manifest.json "$CAND"/episodes.jsonl "$REF"/
  echo "reference updated: $REF"
  exit 0
fi
.venv/bin/bench check --baseline "$REF" --candidate "$CAND" --max-flops-increase 0.02
