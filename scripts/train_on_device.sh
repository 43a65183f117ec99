#!/usr/bin/env bash
# Train the tiny policy on a fresh GPU machine in one call: committed packs in, checkpoint out.
#
# Needs only a Python with PyTorch, safetensors, tokenizers, typer, rich, numpy, pandas, matplotlib and OpenCV
# or imageio-ffmpeg (no LIBERO, no install step: the repository runs from its root). Writes at most 8 files,
# each well under 16 MiB, to $OUT (or ./results/train/device): the checkpoint's config.json, model.safetensors
# and tokenizer.json, plus training.json, loss.csv, heldout.csv and loss_curve.png.
#
#   bash scripts/train_on_device.sh                 # every libero_object pack, CUDA, schedule sized to a 6-minute budget
#   bash scripts/train_on_device.sh data/packs/libero_object data/packs/libero_object_b   # chosen packs
#   bash scripts/train_on_device.sh data/packs/libero_spatial data/packs/libero_spatial_b     # a libero_spatial policy
#   DEVICE=cpu STEPS=3 BATCH=2 bash scripts/train_on_device.sh data/packs/tiny   # the same path on CPU (the test)
#   INIT=bench/assets/tiny-openvla bash scripts/train_on_device.sh             # fine-tune the embedded policy
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_PACKS=(data/packs/libero_object data/packs/libero_object_b data/packs/libero_object_c
               data/packs/libero_object_dagger1)   # 400 expert demos (40 per task) + DAgger round 1
PACKS=("$@")
[ ${#PACKS[@]} -eq 0 ] && PACKS=("${DEFAULT_PACKS[@]}")
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-0}            # 0: size the schedule from BUDGET_S (timed after warm-up)
BUDGET_S=${BUDGET_S:-360}    # training budget; start-up and decoding come on top (about a minute)
BATCH=${BATCH:-512}
LR=${LR:-2e-3}
WARMUP=${WARMUP:-150}
AUGMENT=${AUGMENT:-crop+color}
COMPILE=${COMPILE:---compile}
RUN=${RUN:-/tmp/bench-train-policy}
DEST=${OUT:-results/train/device}

"$PYTHON" - <<'EOF' || { echo "train_on_device: missing Python packages (see the list at the top of this script)" >&2; exit 2; }
import importlib.util as u
need = ["torch", "safetensors", "tokenizers", "typer", "rich", "numpy", "pandas", "matplotlib"]
missing = [m for m in need if u.find_spec(m) is None]
if u.find_spec("cv2") is None and u.find_spec("imageio_ffmpeg") is None:
    missing.append("cv2 or imageio_ffmpeg (an H.264 decoder)")
if missing:
    raise SystemExit("missing: " + ", ".join(missing))
EOF
DATA_ARGS=()
for PACK in "${PACKS[@]}"; do
  [ -f "$PACK/pack.json" ] || { echo "train_on_device: $PACK is not a pack (no pack.json); make one with bench demos pack" >&2; exit 2; }
  DATA_ARGS+=(--data "$PACK")
done
[ "$DEVICE" = cpu ] && COMPILE=--no-compile
INIT_ARGS=()
[ -n "${INIT:-}" ] && INIT_ARGS=(--init "$INIT")
BUDGET_ARGS=()
[ "$BUDGET_S" != 0 ] && BUDGET_ARGS=(--budget-s "$BUDGET_S")

mkdir -p "$DEST"
PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m bench train policy "${DATA_ARGS[@]}" \
  "${INIT_ARGS[@]}" --device "$DEVICE" --steps "$STEPS" "${BUDGET_ARGS[@]}" --batch-size "$BATCH" --lr "$LR" \
  --warmup "$WARMUP" --min-lr-frac 0.05 --augment "$AUGMENT" "$COMPILE" --save-every 300 --eval-every 500 \
  --log-every 25 --out "$RUN" 2>&1 | tee "$DEST/train.log"
cp "$RUN"/checkpoint/{config.json,model.safetensors,tokenizer.json} "$RUN"/{training.json,loss.csv,heldout.csv,loss_curve.png} "$DEST"/
echo "train_on_device: wrote $(ls "$DEST" | wc -l) files to $DEST"
