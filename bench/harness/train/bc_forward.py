"""Batched, differentiable teacher-forced forward of the native OpenVLA (for behaviour cloning).

The inference executor is batch-1 and slot-indexed; training needs a plain causal forward over a batch.
This one runs the same decoder layers (``DecoderLayer.causal_forward``: the same attention and MLP modules)
and is pinned to the executor's logits in ``tests/test_train_policy.py``. Sequences are ``[BOS] + 256 patches + prompt + empty + 6 action
tokens``, right-padded and built vectorised: with causal attention the padding never reaches the positions that are scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.models.llama import LlamaExecutor, rope_table
from bench.core.models.openvla import ACTION_DIM, OpenVLA


def causal_hidden(lm: LlamaExecutor, embeds: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states of a causal forward over ``embeds`` [B, L, D], through the executor's own layers."""
    cfg = lm.cfg
    cos_sin = rope_table(cfg.head_dim, cfg.rope_theta, embeds.shape[1], embeds.device)
    x = embeds
    for layer in lm.model.layers:
        x = layer.causal_forward(x, cos_sin)
    return lm.model.norm(x)


@dataclass
class PromptTable:
    """Every training prompt as ``[BOS] + prompt + empty`` ids, right-padded, for a vectorised batch build."""

    tail: torch.Tensor  # [P, Lp] ids after BOS (prompt + empty), zero-padded
    length: torch.Tensor  # [P] length with BOS and the empty token
    bos: int

    @classmethod
    def build(cls, model: OpenVLA, prompts: list[list[int]], device: torch.device | str = "cpu") -> PromptTable:
        full = [model.with_empty_token(p) for p in prompts]
        tail = torch.zeros(len(full), max(len(p) for p in full) - 1, dtype=torch.long)
        for i, p in enumerate(full):
            tail[i, : len(p) - 1] = torch.tensor(p[1:])
        return cls(tail.to(device), torch.tensor([len(p) for p in full], device=device), full[0][0])


def action_logits(model: OpenVLA, pixels: torch.Tensor, table: PromptTable, prompt_index: torch.Tensor,
                  actions: torch.Tensor) -> torch.Tensor:
    """Logits [B, 7, vocab] that predict the 7 action tokens ``actions`` [B, 7] (teacher forcing).

    Row b is ``[BOS] + patches + tail[prompt_index[b]] + actions[b, :6]``, built without a Python loop: text
    position j holds the prompt id for j < length − 1, then the action tokens, then padding."""
    B, dev = pixels.shape[0], pixels.device
    patches = model.projector(model.vision_backbone(pixels))
    embed = model.language_model.model.embed_tokens
    n_text = table.length[prompt_index] - 1  # prompt + empty, without BOS
    L = table.tail.shape[1] + ACTION_DIM - 1
    j = torch.arange(L, device=dev)[None].expand(B, L)
    prompt_ids = F.pad(table.tail[prompt_index], (0, L - table.tail.shape[1]))
    a_pos = j - n_text[:, None]
    is_action = (a_pos >= 0) & (a_pos < ACTION_DIM - 1)
    ids = torch.where(is_action, actions[:, : ACTION_DIM - 1].gather(1, a_pos.clamp(0, ACTION_DIM - 2)), prompt_ids)
    ids = torch.where((j < n_text[:, None]) | is_action, ids, torch.zeros_like(ids))
    bos = embed(torch.tensor([table.bos], device=dev)).expand(B, 1, -1)
    hidden = causal_hidden(model.language_model, torch.cat([bos, patches, embed(ids)], 1))
    first = patches.shape[1] + n_text  # the empty token's position: it predicts action 1
    picked = hidden[torch.arange(B, device=dev)[:, None], first[:, None] + torch.arange(ACTION_DIM, device=dev)[None]]
    return model.language_model.lm_head(picked)
