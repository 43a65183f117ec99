#!/usr/bin/env bash
# Install everything on a fresh Debian machine (CPU path): OSMesa, a venv, pinned torch CPU wheel, the
# package with its LIBERO and test extras. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p | grep -q libOSMesa; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libosmesa6 >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first and pinned: an unpinned torch would pull a several-GB CUDA build on a CPU machine.
"${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}"
"${PIP[@]}" -e '.[libero,test,ray]'
# timm is only a test oracle for the native ViT; its torchvision dependency does not match the CPU torch
# wheel (torchvision::nms missing), so it goes in without dependencies and torchvision stays out.
"${PIP[@]}" --no-deps timm==1.0.31
.venv/bin/python -m pip uninstall -q -y torchvision 2>/dev/null || true
