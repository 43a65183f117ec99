"""Count multiply-accumulates (MACs) from the shapes the model actually executes.

Two views (methods.md §7):
- **paper**: the VLA-Cache/SparseVLM counter — LLM decoder layers of the prefill only,
  ``4·n·d² + 2·n²·d + 3·n·d·m`` per layer with n = query rows entering the layer. MAC units
  (the papers call them "TFLOPs").
- **full**: every matmul of the policy step by region (vision, projector, prefill, decode, lm_head,
  method overheads), in MACs; FLOPs = 2·MACs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.core import records as R


def paper_layer_macs(n: int, d: int, m: int) -> int:
    """VLA-Cache/SparseVLM counter for one decoder layer with n query rows: 4nd² + 2n²d + 3ndm."""
    return 4 * n * d * d + 2 * n * n * d + 3 * n * d * m


def paper_prefill_macs(rows_per_layer: list[int], d: int, m: int) -> int:
    """Paper-convention prefill MACs from the rows each layer computed (replays a recorded step)."""
    return sum(paper_layer_macs(n, d, m) for n in rows_per_layer)


class MacMeter:
    """Accumulates MACs per region, plus the paper-convention prefill counter."""

    def __init__(self) -> None:
        self.regions: dict[str, int] = defaultdict(int)
        self.paper_prefill = 0

    def add(self, region: str, macs: int) -> None:
        self.regions[region] += int(macs)

    def add_paper_layer(self, n: int, d: int, m: int) -> None:
        self.paper_prefill += paper_layer_macs(n, d, m)

    def linear(self, region: str, rows: int, d_in: int, d_out: int) -> None:
        self.add(region, rows * d_in * d_out)

    @property
    def total(self) -> int:
        return sum(self.regions.values())

    def reset(self) -> None:
        self.regions.clear()
        self.paper_prefill = 0

    def report(self) -> dict[str, Any]:
        """Flat record: ``macs_<region>``, ``macs_total``, ``flops_total`` and ``paper_prefill_macs``."""
        out: dict[str, Any] = {R.macs_field(k): v for k, v in sorted(self.regions.items())}
        out[R.MACS_TOTAL] = self.total
        out[R.FLOPS_TOTAL] = 2 * self.total
        out[R.PAPER_PREFILL_MACS] = self.paper_prefill
        return out
