"""VLA-Cache (siyuhsu/vla-cache @a490988, OpenVLA path) — reuse static tokens' K/V from the last step.

Per control step (the first step of an episode is a full pass):
  1. static tokens: cosine similarity of raw uint8 14×14 patches of the current and previous
     *preprocessed* frames; keep sim ≥ 0.996, sorted by similarity, top 130;
  2. evict task-relevant tokens: top 120 visual tokens by the previous step's layer-15 head-mean
     attention from the text queries (slots 257..291: the reference's hard-coded 35 rows);
     reusable R = static − relevant, **sorted by position**;
  3. layer-adaptive ratio from the previous step's per-layer attention entropy:
     reuse_l = 1 − minmax(E)_l, increases damped by 0.55 layer over layer;
  4. at layers 2, 6, 9, 11 (before the layer runs) stop computing the prefix R[:max(1, int(reuse_l·|R|))]
     if it is at least as long as the last one (cumulative: tokens never come back). Reused tokens keep
     the K/V their slots hold — possibly many steps old.
Named variants: ``order="importance"`` (least-attended first instead of the position prefix) and
``causal=False`` (the reference's SDPA→eager fallback runs the prefill without a causal mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.core.models.steering import PrefillState, Steering
from bench.core.records import Field
from methods.common import ATTN_LAYER, IMAGE_START, head_mean, text_to_vision

REUSE_LAYERS = (2, 6, 9, 11)
PATCH = 14


@dataclass
class VLACacheConfig:
    sim_threshold: float = 0.996
    static_top_k: int = 130  # OpenVLA call (the OFT call uses 150)
    task_top_k: int = 120  # OFT: 100
    growth: float = 0.55
    text_rows: int = 35
    order: str = "position"  # "position" (reference) | "importance"
    causal: bool = True  # False: the reference's non-causal eager fallback
    fixed_reuse: float = -1.0  # ≥ 0 replaces the entropy schedule (for invariants and ablations)
    n_visual: int = 256

    def __post_init__(self) -> None:
        if self.order not in ("position", "importance"):
            raise ValueError(f"VLA-Cache order must be position|importance; got {self.order!r}")


def static_patches(frame: np.ndarray, prev: np.ndarray, threshold: float, top_k: int) -> np.ndarray:
    """Patch indices (raster order 0..255) whose pixels barely changed, most similar first."""
    g = frame.shape[0] // PATCH

    def patches(img: np.ndarray) -> np.ndarray:
        return img.reshape(g, PATCH, g, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(g * g, -1).astype(np.float32)

    a, b = patches(frame), patches(prev)
    sim = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)
    idx = np.nonzero(sim >= threshold)[0]
    return idx[np.argsort(-sim[idx], kind="stable")][:top_k]


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Mean row entropy of the head-mean attention (a 0-d fp32 tensor: read to the host once per step)."""
    a = head_mean(attn)
    a = a / (a.sum(-1, keepdim=True) + 1e-10)
    return (-(a * (a + 1e-10).log()).sum(-1)).mean()


def reuse_schedule(entropies: list[float], growth: float) -> list[float]:
    e = np.asarray(entropies, dtype=np.float64)
    r = 1 - (e - e.min()) / (e.max() - e.min() + 1e-10)
    for layer in range(1, len(r)):
        if r[layer] > r[layer - 1]:
            r[layer] = r[layer - 1] + growth * (r[layer] - r[layer - 1])
    return r.tolist()


class VLACache(Steering):
    name = "vla-cache"
    Config = VLACacheConfig

    def __init__(self, config: VLACacheConfig | None = None) -> None:
        self.config = config or VLACacheConfig()
        self.causal = self.config.causal
        self.attention_layers = frozenset(range(32))
        self.reset_episode(0)

    def bind(self, n_layers: int, n_visual: int, device: torch.device | str = "cpu") -> None:
        if n_layers <= max(*REUSE_LAYERS, ATTN_LAYER) or n_visual != self.config.n_visual:
            raise ValueError(f"VLA-Cache needs > {ATTN_LAYER} layers and {self.config.n_visual} visual tokens; "
                             f"the model has {n_layers} and {n_visual}")
        self.attention_layers = frozenset(range(n_layers))  # entropy of every layer, as the reference

    def reset_episode(self, seed: int) -> None:
        self.prev_frame: np.ndarray | None = None
        self.prev_relevance: torch.Tensor | None = None
        self.prev_entropy: torch.Tensor | None = None  # [n_layers] of the previous step
        self.ratios: list[float] = []

    def begin_step(self, frame: np.ndarray, step_index: int) -> None:
        cfg = self.config
        self.reusable: list[int] = []
        self.n_static = 0
        if self.prev_frame is not None and self.prev_relevance is not None:
            static = static_patches(frame, self.prev_frame, cfg.sim_threshold, cfg.static_top_k)
            relevant = set(torch.topk(self.prev_relevance, min(cfg.task_top_k, cfg.n_visual)).indices.tolist())
            self.n_static = len(static)
            keep = [int(i) for i in static if int(i) not in relevant]
            if cfg.order == "importance":
                keep.sort(key=lambda i: float(self.prev_relevance[i]))
            else:
                keep.sort()
            self.reusable = [i + IMAGE_START for i in keep]
            self.ratios = ([cfg.fixed_reuse] * len(self.prev_entropy) if cfg.fixed_reuse >= 0
                           else reuse_schedule(self.prev_entropy.tolist(), cfg.growth))
        self.prev_frame = frame
        self.entropy: list[torch.Tensor] = []
        self.removed = 0

    def at_layer(self, state: PrefillState) -> None:
        if state.attn is not None:
            self.entropy.append(attention_entropy(state.attn))
            if state.layer - 1 == ATTN_LAYER:
                self.relevance = text_to_vision(state.attn, state.attn_query_slots, self.config.n_visual,
                                                self.config.text_rows, state.n_prefill)
        if state.layer in REUSE_LAYERS and self.reusable and state.can_reuse:
            top_k = max(1, int(self.ratios[state.layer] * len(self.reusable)))
            if top_k >= self.removed:
                sel = torch.tensor(self.reusable[self.removed : top_k], device=state.slots.device, dtype=torch.long)
                state.reuse(sel)
                self.removed = top_k
        if state.layer == len(self.attention_layers):  # after the last layer: keep stats for the next step
            self.prev_entropy, self.prev_relevance = torch.stack(self.entropy), self.relevance

    record_fields = (Field("static_tokens", "tokens", "patches static since the previous frame"),
                     Field("reusable_tokens", "tokens", "static patches not among the task-relevant ones"),
                     Field("reused_tokens", "tokens", "reusable tokens reused in the last reuse layer"),
                     Field("entropy_per_layer", "nats", "attention entropy per layer, this step"),
                     Field("reuse_ratio_at_layers", "fraction", "the layer-adaptive reuse ratio at the reuse layers"))

    def step_record(self) -> dict[str, object]:
        """What the step consumed: static/reusable/reused counts, the entropy per layer, reuse ratios."""
        return {"static_tokens": self.n_static, "reusable_tokens": len(self.reusable), "reused_tokens": self.removed,
                "entropy_per_layer": [round(e, 5) for e in torch.stack(self.entropy).tolist()] if self.entropy else [],
                "reuse_ratio_at_layers": [round(self.ratios[i], 5) for i in REUSE_LAYERS] if self.reusable else []}
