"""FastV (pkunlp-icler/FastV @d165972; OpenVLA port: MINT-SJTU/VLA-Pruner).

Algorithm, prefill only:
  1. layers 0..K−1 run on every token; layer K−1 also returns its attention probabilities;
  2. score each visual token by the head-mean attention it receives from the **last** query token
     (the code's rule; ``score="mean"``, the paper's all-query mean, is the named variant);
  3. keep the top round(N·(1−R)) visual tokens, drop the rest from layer K on — as queries and keys,
     for the decode steps too; kept tokens keep their original position ids.
K = 0 has no attention to rank by: the reference then drops a random set (seeded per episode here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.models.steering import PrefillState, Steering
from bench.core.records import Field
from methods.common import IMAGE_START, head_mean, ordered_subset, visual_slots


@dataclass
class FastVConfig:
    k: int = 2  # paper default; the OpenVLA reference script uses K=3
    ratio: float = 0.5  # R: fraction of visual tokens dropped
    score: str = "last"  # "last" (code) | "mean" (paper text)
    n_visual: int = 256

    def __post_init__(self) -> None:
        if self.k < 0 or not 0.0 <= self.ratio < 1.0 or self.score not in ("last", "mean"):
            raise ValueError(f"FastV needs k ≥ 0, 0 ≤ ratio < 1, score in last|mean; got {self}")

    @property
    def n_keep(self) -> int:
        return round(self.n_visual * (1 - self.ratio))


def fastv_keep(attn: torch.Tensor, last_row: int, n_visual: int, n_keep: int, score: str) -> torch.Tensor:
    """Visual slots to keep, ranked by layer K−1 attention ([H, n_q, n_slots], columns = slots)."""
    a = head_mean(attn)
    cols = slice(IMAGE_START, IMAGE_START + n_visual)
    s = a[last_row, cols] if score == "last" else a[:, cols].mean(0)
    return torch.topk(s, n_keep).indices + IMAGE_START


class FastV(Steering):
    name = "fastv"
    Config = FastVConfig

    def __init__(self, config: FastVConfig | None = None) -> None:
        self.config = config or FastVConfig()
        self.attention_layers = frozenset({self.config.k - 1}) if self.config.k > 0 else frozenset()
        self.generator = torch.Generator()

    def reset_episode(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self.kept = None

    def bind(self, n_layers: int, n_visual: int, device: torch.device | str = "cpu") -> None:
        if self.config.k >= n_layers or n_visual != self.config.n_visual:
            raise ValueError(f"FastV K={self.config.k} with {self.config.n_visual} visual tokens does not fit a "
                             f"model of {n_layers} layers and {n_visual} visual tokens")

    def at_layer(self, state: PrefillState) -> None:
        cfg = self.config
        if state.layer != cfg.k or cfg.n_keep >= cfg.n_visual:
            return
        vis = visual_slots(cfg.n_visual, state.slots.device)
        if cfg.k == 0:
            keep = vis[torch.randperm(cfg.n_visual, generator=self.generator)[: cfg.n_keep].to(vis.device)]
        else:
            last_row = state.n_prefill - 1  # layers < K are untouched: row i is slot i
            keep = fastv_keep(state.attn, last_row, cfg.n_visual, cfg.n_keep, cfg.score)
        state.drop(ordered_subset(vis, ~torch.isin(vis, keep), cfg.n_visual - cfg.n_keep))
        self.kept = keep

    record_fields = (Field("fastv_kept_slots", "slots", "the visual slots kept from layer K on"),)

    def step_record(self) -> dict[str, object]:
        """The visual slots kept from layer K on (what the attention ranking chose)."""
        kept = getattr(self, "kept", None)
        return {"fastv_kept_slots": sorted(kept.tolist())} if kept is not None else {}
