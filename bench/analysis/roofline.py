"""Roofline lower bounds: a region can run no faster than its FLOPs at peak or its bytes at bandwidth.

Peaks are vendor dense figures (no sparsity); the CPU figure is measured on the spot. Bytes moved per
region: every weight the region uses read once per forward pass, plus the K/V its attention writes and reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.core import records as R
from bench.core.models.openvla import OpenVLA


@dataclass(frozen=True)
class Device:
    name: str
    bf16_tflops: float  # dense
    fp32_tflops: float
    bandwidth_gbs: float


GPUS = {
    "H100 SXM": Device("H100 SXM", 989.0, 67.0, 3350.0),
    "H100 PCIe": Device("H100 PCIe", 756.0, 51.0, 2000.0),
    "H200": Device("H200", 989.0, 67.0, 4800.0),
    "A100": Device("A100 SXM 80GB", 312.0, 19.5, 2039.0),
    "RTX 4090": Device("RTX 4090", 165.2, 82.6, 1008.0),
    "RTX 3090": Device("RTX 3090", 71.0, 35.6, 936.0),
    "A6000": Device("RTX A6000", 154.8, 38.7, 768.0),
    "L40S": Device("L40S", 362.0, 91.6, 864.0),
}


def measure_cpu(size: int = 1024, repeat: int = 5) -> Device:
    """Measured fp32 matmul throughput and copy bandwidth of this CPU (best of ``repeat``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    flops = 2 * size**3 / best / 1e12
    x = torch.empty(64 * 1024 * 1024 // 4)
    bw = min(_timed(lambda: x.clone()) for _ in range(repeat))
    return Device(f"CPU ({torch.get_num_threads()} threads, measured)", flops, flops, 2 * x.numel() * 4 / bw / 1e9)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def device_for(name: str) -> Device:
    for key, dev in GPUS.items():
        if key.lower().replace(" ", "") in name.lower().replace(" ", ""):
            return dev
    return measure_cpu()


def lower_bound_s(macs: float, bytes_moved: float, device: Device, dtype: str) -> float:
    peak = (device.bf16_tflops if dtype in ("bf16", "fp16") else device.fp32_tflops) * 1e12
    return max(2 * macs / peak, bytes_moved / (device.bandwidth_gbs * 1e9))


HEAD_REGIONS = ("decode", "action_head")  # OpenVLA's 6 token decodes, or CogACT's DiT × DDIM steps


def regions_of(step: dict) -> tuple[str, str, str]:
    """The timed regions of a recorded step: vision, prefill and the model's head region."""
    head = "action_head" if R.time_field("action_head") in step else "decode"
    return ("vision", "prefill", head)


@dataclass(frozen=True)
class ModelBytes:
    """What a policy step must read from memory, per region (bytes)."""

    vision_weights: int  # vision backbone + projector
    layer_weights: int  # the LLM's decoder layers
    head_weights: int  # lm_head
    kv_per_token: int  # K and V of one token over all layers
    action_model_weights: int = 0  # CogACT's DiT (read once per DDIM step)
    ddim_steps: int = 0

    @classmethod
    def of(cls, model: OpenVLA) -> ModelBytes:
        def size(module: torch.nn.Module) -> int:
            return sum(p.numel() * p.element_size() for p in module.parameters())

        lm, cfg = model.language_model, model.cfg.text
        elem = lm.lm_head.weight.element_size()
        action = getattr(model, "action_model", None)
        return cls(size(model.vision_backbone) + size(model.projector), size(lm.model.layers), size(lm.lm_head),
                   2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * elem,
                   size(action) if action is not None else 0, model.head.ddim_steps if action is not None else 0)


def region_bounds_s(step: dict, sizes: ModelBytes, device: Device, dtype: str, n_decode: int = 6) -> dict[str, float]:
    """Lower bound (s) of each timed region of one recorded policy step, and of their sum (``step``).

    - vision: backbone + projector MACs; their weights read once.
    - prefill: decoder-layer MACs (+ attention statistics a method asks for); layer weights read once, the K/V
      of the computed rows written and of the live keys read.
    - decode: lm_head × (n_decode + 1) and n_decode single-token passes; every pass reads all layer weights
      (the memory-bound part at batch 1) and the live K/V.
    - action_head (CogACT): the DiT's MACs over all DDIM steps and the CFG batch; its weights read once per step.
    """
    def m(*regions: str) -> int:
        return sum(step.get(R.macs_field(r), 0) for r in regions)

    macs = {"vision": m("vision", "projector"), "prefill": m("prefill", "method_attn_stats"),
            "decode": m("decode", "lm_head"), "action_head": m("action_head")}
    rows = step.get(R.PREFILL_ROWS_PER_LAYER) or [0]
    n_rows, n_keys = sum(rows) / len(rows), max(rows)
    moved = {
        "vision": sizes.vision_weights,
        "prefill": sizes.layer_weights + sizes.kv_per_token * (n_rows + n_keys),
        "decode": n_decode * (sizes.layer_weights + sizes.kv_per_token * n_keys)
        + (n_decode + 1) * sizes.head_weights,
        "action_head": sizes.ddim_steps * sizes.action_model_weights,
    }
    bounds = {r: lower_bound_s(macs[r], moved[r], device, dtype) for r in regions_of(step)}
    bounds["step"] = sum(bounds.values())
    return bounds
