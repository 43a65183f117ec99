"""SparseVLM v1.5 (Gumpest/SparseVLMs, tag v1.5) on OpenVLA's 256 visual tokens.

Algorithm, prefill only:
  1. raters: on the LLM input embeddings, r = softmax(V·Tᵀ over text).mean(over visual); the text tokens
     after the image with r > mean(r) rate the visual tokens;
  2. at the outputs of layers 2, 6, 15 (the layer runs in full and returns attention), relevance =
     head-mean attention from raters to each visual token, averaged over raters; keep the top-b visual
     tokens, b from the v1.5 schedule;
  3. recycling: of the pruned tokens, the top int(0.3·n)+1 by relevance are clustered (DPC-kNN,
     int(m/10)+1 centres and as many neighbours) and average-merged; merged tokens go right after the kept
     visual tokens;
  4. positions are renumbered contiguously (the reference does; FastV and VLA-Cache keep them), and each
     decode token's position is its layer's cache length, as v1.5's ``get_usable_length``.
Budgets: v1.5 tables are for LLaVA's 576 tokens; we scale them by 256/576 and round (a harness choice):
retain 192 → [133, 89, 49], 128 → [135, 49, 16], 96 → [106, 21, 12], 64 → [29, 13, 8].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.models.steering import PrefillState, Steering
from bench.core.records import Field
from methods.common import IMAGE_START, head_mean, ordered_subset

V15_BUDGETS_576 = {192: (300, 200, 110), 128: (303, 110, 36), 96: (238, 48, 26), 64: (66, 30, 17)}
PRUNE_LAYERS = (2, 6, 15)


@dataclass
class SparseVLMConfig:
    retain: int = 192  # v1.5 schedule key (LLaVA-576 average retained tokens)
    budget_scale: float = 256 / 576  # budgets × this, rounded
    recycle: bool = True
    n_visual: int = 256

    def __post_init__(self) -> None:
        if self.retain not in V15_BUDGETS_576:
            raise ValueError(f"SparseVLM retain must be one of {sorted(V15_BUDGETS_576)}; got {self.retain}")

    @property
    def budgets(self) -> dict[int, int]:
        return {layer: round(b * self.budget_scale) for layer, b in zip(PRUNE_LAYERS, V15_BUDGETS_576[self.retain], strict=True)}


def select_raters(embeds: torch.Tensor, n_visual: int) -> torch.Tensor:
    """Offsets (into the text after the image) of the rater tokens: r_t > mean(r). embeds: [L, D]."""
    v = embeds[IMAGE_START : IMAGE_START + n_visual].float()
    t = embeds[IMAGE_START + n_visual :].float()
    r = torch.softmax(v @ t.T, dim=-1).mean(0)
    return (r > r.mean()).nonzero().squeeze(1)


def dpc_knn(x: torch.Tensor, n_clusters: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Density-peak clustering with kNN density (TCFormer's cluster_dpc_knn); returns a cluster id per row."""
    x = x.float()
    dist = torch.cdist(x, x) / x.shape[-1] ** 0.5
    nearest = torch.topk(dist, k=min(k, x.shape[0]), dim=-1, largest=False).values
    density = (-(nearest**2).mean(-1)).exp()
    density = density + torch.rand(density.shape, generator=generator).to(density) * 1e-6
    higher = density[None, :] > density[:, None]
    dist_higher = torch.where(higher, dist, dist.max()).min(-1).values
    centers = torch.topk(dist_higher * density, n_clusters).indices
    assign = dist[:, centers].argmin(-1)
    assign[centers] = torch.arange(n_clusters, device=x.device)
    return assign


def recycle(x: torch.Tensor, relevance: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Merge the most relevant pruned tokens: top int(0.3·n)+1 → int(m/10)+1 averaged clusters. x: [n, D]."""
    m = int(x.shape[0] * 0.3) + 1
    picked = x[torch.topk(relevance, min(m, x.shape[0])).indices]
    n_clusters = int(picked.shape[0] / 10) + 1
    assign = dpc_knn(picked, n_clusters, n_clusters, generator)
    sums = torch.zeros(n_clusters, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, assign, picked)
    counts = torch.bincount(assign, minlength=n_clusters).clamp(min=1).to(x.dtype)
    return sums / counts[:, None]


class SparseVLM(Steering):
    name = "sparsevlm"
    Config = SparseVLMConfig
    attention_layers = frozenset(PRUNE_LAYERS)
    extra_slots = 32  # merged tokens: at most 8 per prune layer for 256 visual tokens

    def __init__(self, config: SparseVLMConfig | None = None) -> None:
        self.config = config or SparseVLMConfig()
        self.generator = torch.Generator()

    def reset_episode(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def bind(self, n_layers: int, n_visual: int, device: torch.device | str = "cpu") -> None:
        if n_layers <= max(PRUNE_LAYERS) + 1 or n_visual != self.config.n_visual:
            raise ValueError(f"SparseVLM prunes after layers {PRUNE_LAYERS} of {self.config.n_visual} visual tokens; "
                             f"the model has {n_layers} layers and {n_visual} visual tokens")

    record_fields = (Field("sparsevlm_raters", "tokens", "text raters chosen"),
                     Field("sparsevlm_kept_after_layer", "tokens", "visual tokens kept after each prune layer"))

    def step_record(self) -> dict[str, object]:
        """Raters chosen and visual tokens kept after each prune layer (merged tokens not included)."""
        return {"sparsevlm_raters": int(self.raters.numel()),
                "sparsevlm_kept_after_layer": [self.kept_after.get(layer, None) for layer in PRUNE_LAYERS]}

    def decode_position(self, i: int, n_prefill: int, n_live: list[int]) -> list[int]:
        return [n + i for n in n_live]

    def at_layer(self, state: PrefillState) -> None:
        if state.layer == 0:
            # the rater count is data-dependent: the step's one device→host read (nonzero)
            self.raters = select_raters(state.x[0], self.config.n_visual) + IMAGE_START + self.config.n_visual
            self.next_slot = state.n_prefill
            self.n_visual_rows = self.config.n_visual  # visual + merged rows: contiguous from row IMAGE_START
            self.kept_after: dict[int, int] = {}
        elif state.layer - 1 in PRUNE_LAYERS:
            self.prune(state, self.config.budgets[state.layer - 1])

    def prune(self, state: PrefillState, budget: int) -> None:
        """Keep the ``budget`` visual rows the raters attend to most, merge the best pruned ones, renumber.

        Row layout (BOS, visual + merged rows, text) and its counts are known on the host, so the rows are
        gathered by index: no host read here.
        """
        cfg, L, n_vis = self.config, state.n_prefill, self.n_visual_rows
        if n_vis <= budget:
            return
        x, dev = state.x[0], state.x.device
        vis_rows = torch.arange(IMAGE_START, IMAGE_START + n_vis, device=dev)
        rater_rows = self.raters - L + x.shape[0]  # text rows are the last ones, in slot order
        rel = head_mean(state.attn)[rater_rows][:, state.slots[vis_rows]].mean(0)
        order = torch.topk(rel, budget).indices.sort().values  # kept tokens stay in sequence order
        kept = vis_rows[order]
        prefix = torch.arange(IMAGE_START, device=dev)
        new_x, new_slots = [x[prefix], x[kept]], [state.slots[prefix], state.slots[kept]]
        n_merged = 0
        if cfg.recycle:
            pruned = torch.ones(n_vis, dtype=torch.bool, device=dev)
            pruned[order] = False
            n_pruned = n_vis - budget
            merged = recycle(x[ordered_subset(vis_rows, pruned, n_pruned)], ordered_subset(rel, pruned, n_pruned),
                             self.generator)
            n_merged = merged.shape[0]
            new_x.append(merged)
            new_slots.append(torch.arange(self.next_slot, self.next_slot + n_merged, device=dev))
            self.next_slot += n_merged
        text = torch.arange(IMAGE_START + n_vis, x.shape[0], device=dev)
        new_x.append(x[text])
        new_slots.append(state.slots[text])
        slots = torch.cat(new_slots)
        state.set_rows(torch.cat(new_x)[None], slots, torch.arange(slots.numel(), device=dev))
        self.kept_after[state.layer - 1] = budget
        self.n_visual_rows = budget + n_merged
