"""OpenVLA (Prismatic): fused DINOv2+SigLIP features → MLP projector → Llama-2, 7 greedy action tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.core import records as R
from bench.core.flops import MacMeter
from bench.core.models.config import OpenVLAConfig
from bench.core.models.llama import KVCache, LlamaExecutor
from bench.core.models.steering import PrefillState, Steering
from bench.core.models.vit import VisionTransformer
from bench.core.timing import RegionTimer

ACTION_DIM = 7


class VisionBackbone(nn.Module):
    def __init__(self, cfg: OpenVLAConfig) -> None:
        super().__init__()
        self.featurizer = VisionTransformer(cfg.vision[0])
        self.fused_featurizer = VisionTransformer(cfg.vision[1]) if len(cfg.vision) > 1 else None

    def forward(self, pixel_values: torch.Tensor, meter: MacMeter | None = None) -> torch.Tensor:
        """[B, 6, 224, 224] (DINOv2- then SigLIP-normalised) → [B, 256, vision_dim]."""
        feats = self.featurizer(pixel_values[:, :3], meter)
        if self.fused_featurizer is None:
            return feats
        return torch.cat([feats, self.fused_featurizer(pixel_values[:, 3:], meter)], dim=2)


class Projector(nn.Module):
    """Prismatic 'fused-gelu-mlp': fc1 (v→4v) GELU fc2 (→d) GELU fc3 (d→d)."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)

    def forward(self, x: torch.Tensor, meter: MacMeter | None = None) -> torch.Tensor:
        if meter is not None:
            n, v, d = x.shape[0] * x.shape[1], self.fc1.in_features, self.fc3.out_features
            meter.add("projector", n * (v * 4 * v + 4 * v * d + d * d))
        return self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


@dataclass
class ActionPrediction:
    """What one policy step computed: returned, not left in attributes, so every reader gets it explicitly."""

    tokens: list[int]  # the 7 greedy action tokens
    prefill: PrefillState  # the plan the prefill ran: rows computed per layer, method statistics, hook time
    hidden: torch.Tensor  # final-norm hidden state of the last prompt position (it predicts the first token)


class OpenVLA(nn.Module):
    decode_slots = ACTION_DIM  # cache slots a step's autoregressive decode writes (CogACT: none)

    def __init__(self, cfg: OpenVLAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_backbone = VisionBackbone(cfg)
        self.projector = Projector(cfg.vision_dim, cfg.text.hidden_size)
        self.language_model = LlamaExecutor(cfg.text)

    def prefill_embeddings(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, meter: MacMeter | None) -> torch.Tensor:
        """[BOS] + projected patches + prompt tokens after BOS: image tokens sit at positions 1..256."""
        patches = self.projector(self.vision_backbone(pixel_values, meter), meter)
        text = self.language_model.model.embed_tokens(input_ids)
        return torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)

    def with_empty_token(self, input_ids: list[int]) -> list[int]:
        return input_ids if input_ids[-1] == self.cfg.empty_token_id else [*input_ids, self.cfg.empty_token_id]

    def cache_capacity(self, n_prefill: int, steering: Steering | None = None) -> int:
        """Slots an episode needs: the prefill, a method's extra rows (SparseVLM's merged tokens), 7 decodes, and
        the compiled prefill's scratch slot for padding rows."""
        extra = steering.extra_slots if steering else 0
        return n_prefill + extra + self.decode_slots + self.language_model.scratch_slots

    def new_cache(self, n_prefill: int, steering: Steering | None = None) -> KVCache:
        return self.language_model.new_cache(self.cache_capacity(n_prefill, steering))

    def prefill_step(self, pixel_values: torch.Tensor, input_ids: list[int], cache: KVCache,
                     steering: Steering | None, meter: MacMeter | None,
                     timer: RegionTimer) -> tuple[torch.Tensor, PrefillState, int]:
        """The ``vision`` region (backbone, projector, embeddings) and the ``prefill`` region (the decoder-layer
        loop under the method's plan): the last position's final-norm hidden state, the plan, the length."""
        with timer.region("vision"):
            ids = torch.tensor([self.with_empty_token(input_ids)], device=pixel_values.device)
            embeds = self.prefill_embeddings(pixel_values, ids, meter)
        with timer.region("prefill"):
            hidden, state = self.language_model.prefill(embeds, cache, steering, meter)
        return hidden, state, embeds.shape[1]

    @torch.inference_mode()
    def predict_action(
        self,
        pixel_values: torch.Tensor,
        input_ids: list[int],
        cache: KVCache,
        steering: Steering | None = None,
        meter: MacMeter | None = None,
        timer: RegionTimer | None = None,
    ) -> ActionPrediction:
        """Greedy decoding of 7 action tokens: 1 prefill + 6 decode steps; the cache is cropped to the prefill.

        Timed regions: ``vision`` (backbone + projector + embeddings), ``prefill`` (the decoder-layer loop:
        the paper's latency region) and ``decode`` (lm_head + 6 decode steps).
        """
        timer = timer or RegionTimer(pixel_values.device)
        lm = self.language_model
        hidden, state, n = self.prefill_step(pixel_values, input_ids, cache, steering, meter, timer)
        first_decode_slot = n + (steering.extra_slots if steering else 0)
        prefill_live = list(cache.n_live)
        with timer.region("decode"):
            tokens, last = [], hidden
            for i in range(ACTION_DIM):
                tokens.append(lm.logits(last, meter).argmax(-1))
                if i + 1 < ACTION_DIM:
                    pos = steering.decode_position(i, n, prefill_live) if steering else n + i
                    last = lm.decode(tokens[-1], first_decode_slot + i, pos, cache, meter)
            token_ids = torch.cat(tokens).tolist()  # the step's one device→host read of the tokens
        cache.live[:, first_decode_slot:] = False  # crop: only the prefill's K/V carry to the next step
        cache.steps += 1
        return ActionPrediction(token_ids, state, hidden)


def visual_token_accounting(n_visual: int, n_prefill: int, state, cache: KVCache) -> dict[str, object]:
    """Per layer: visual tokens computed / reused (live, not computed) / dropped, and merged rows.

    Visual tokens are slots 1..n_visual; merged rows (SparseVLM recycling) live in slots ≥ n_prefill.
    One device→host copy per step.
    """
    rows = state.computed_per_layer
    computed = torch.stack([((s >= 1) & (s <= n_visual)).sum() for s in rows])
    all_rows = [int(s.shape[0]) for s in rows]
    merged = torch.stack([(s >= n_prefill).sum() for s in rows])
    live = cache.live[: len(rows), 1 : 1 + n_visual].sum(1)
    counts = torch.stack([computed, live - computed, n_visual - live, merged]).tolist()
    c, r, d, m = counts
    n = len(c)
    return {
        R.VISUAL_COMPUTED_PER_LAYER: c, R.VISUAL_REUSED_PER_LAYER: r, R.VISUAL_DROPPED_PER_LAYER: d,
        R.MERGED_PER_LAYER: m, R.PREFILL_ROWS_PER_LAYER: all_rows, R.VISUAL_COMPUTED_MEAN: sum(c) / n,
        R.VISUAL_REUSED_MEAN: sum(r) / n, R.VISUAL_DROPPED_MEAN: sum(d) / n, R.CACHE_RATIO: sum(r) / (n * n_visual),
    }
