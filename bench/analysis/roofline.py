"""Roofline lower bounds: a region can run no faster than its FLOPs at peak or its bytes at bandwidth.

Peaks are vendor dense figures (no sparsity); the CPU figure is measured on the spot. Bytes moved per
region: every weight read once per forward, plus the K/V the attention reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


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


def prefill_bytes(n_params_llm: int, bytes_per_param: int, kv_bytes: int) -> int:
    """Weights read once per prefill plus the K/V written and read."""
    return n_params_llm * bytes_per_param + 2 * kv_bytes
