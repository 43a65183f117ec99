#!/usr/bin/env bash
# Issue 18's GPU check in one call on a fresh GPU machine with PyTorch (no LIBERO, no install step: the repository
# runs from its root): the openvla-7b preset with random weights in bf16, replaying the committed fidelity trace
# (60 real LIBERO frames) through every method — eager, with the compiled decode step, and compiled with the papers'
# eager attention — then the gpu-marked tests. Writes to $OUT (or ./results/gpu_profile): profile_eager.{csv,json},
# profile_compiled.{csv,json}, profile_paper.{csv,json}, gpu_profile.log (7 files).
#
#   bash benchmarks/gpu_profile.sh                                   # the GPU check (about 5 minutes on an H100/H200)
#   POLICY=tiny-openvla DEVICE=cpu DTYPE=fp32 METHODS=baseline bash benchmarks/gpu_profile.sh   # same path on CPU
#   POLICY=cogact-base bash benchmarks/gpu_profile.sh                # CogACT-Base (DiT-B head) instead of OpenVLA-7B
#
# Needs: torch, numpy, pandas, matplotlib, typer, rich, safetensors, tokenizers (pytest for the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
POLICY=${POLICY:-openvla-7b}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
METHODS=${METHODS:-baseline,fastv,sparsevlm,vla-cache,lac}
WARMUP=${WARMUP:-5}
REPEAT=${REPEAT:-1}
DEST=${OUT:-results/gpu_profile}

"$PYTHON" - <<'EOF' || { echo "gpu_profile: missing Python packages (see the list at the top of this script)" >&2; exit 2; }
import importlib.util as u
need = ["torch", "numpy", "pandas", "matplotlib", "typer", "rich", "safetensors", "tokenizers"]
missing = [m for m in need if u.find_spec(m) is None]
if missing:
    raise SystemExit("missing: " + ", ".join(missing))
EOF
mkdir -p "$DEST"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  # eager: the executor as it runs by default; compiled: the decode step through torch.compile (CUDA graphs);
  # paper: compiled, with HF eager attention in every layer (the papers' timing convention)
  for execution in eager compiled paper; do
    flags=(--no-compile --attention sdpa)
    [ "$execution" = compiled ] && flags=(--compile --attention sdpa)
    [ "$execution" = paper ] && flags=(--compile --attention eager)
    "$PYTHON" -m bench profile --policy "$POLICY" --random-weights --trace results/reference/fidelity \
      --method "$METHODS" --device "$DEVICE" --dtype "$DTYPE" --warmup "$WARMUP" --repeat "$REPEAT" "${flags[@]}" \
      --out "/tmp/gpu_profile_$execution"
    cp "/tmp/gpu_profile_$execution/profile.csv" "$DEST/profile_$execution.csv"
    cp "/tmp/gpu_profile_$execution/profile.json" "$DEST/profile_$execution.json"
  done
  if [ "$DEVICE" = cuda ]; then
    "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/test_fast_decode.py tests/test_timing.py
  fi
} 2>&1 | tee "$DEST/gpu_profile.log"
echo "gpu_profile: wrote $(ls "$DEST" | wc -l) files to $DEST"
