#!/usr/bin/env bash
# CI's two regression gates on the embedded policy (docs/measuring.md, "Compare and gate"):
# 1. fidelity: every method's greedy tokens and actions on the committed 60-frame trace vs the committed
#    reference (exact on this machine; catches executor and method regressions at any success rate);
# 2. success: the baseline on a fixed set of full-length episodes vs the committed reference run (paired,
#    exact McNemar), also failing if paper-convention prefill MACs grow by more than 2 % or any episode errors.
# `bash scripts/gate.sh --update` re-records both references (after an intended change, e.g. a retrained policy).
set -euo pipefail
cd "$(dirname "$0")/.."
FIDELITY=results/reference/fidelity
REF=results/reference/tiny-openvla_libero_object_baseline
EPISODES=(--tasks 4,7 --episodes-per-task 5)  # the embedded policy succeeds on 4:1, 7:1, 7:4 (its card)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
if [ "${1:-}" = "--update" ]; then
  .venv/bin/bench fidelity --update --reference "$FIDELITY"
else
  .venv/bin/bench fidelity --reference "$FIDELITY"
fi
.venv/bin/bench run --method baseline --suite libero_object "${EPISODES[@]}" --executor ray --workers 2 --out "$OUT"
CAND=$(ls -d "$OUT"/libero_object/tiny-openvla/baseline/*)
if [ "${1:-}" = "--update" ]; then
  rm -rf "$REF" && mkdir -p "$REF" && cp "$CAND"/manifest.json "$CAND"/episodes.jsonl "$REF"/
  echo "references updated: $FIDELITY, $REF"
  exit 0
fi
.venv/bin/bench check --baseline "$REF" --candidate "$CAND" --max-flops-increase 0.02
