"""Batched, differentiable teacher-forced forward of the native OpenVLA (for behaviour cloning).

The inference executor is batch-1 and slot-indexed; training needs a plain causal forward over a batch.
This one reuses the same modules (so the weights are the checkpoint's) and is pinned to the executor's
logits in ``tests/test_train_policy.py``. Sequences are ``[BOS] + 256 patches + prompt + empty + 6 action
tokens``, right-padded: with causal attention the padding never reaches the positions that are scored.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bench.models.llama import LlamaExecutor, rope, rope_table
from bench.models.openvla import ACTION_DIM, OpenVLA


def causal_hidden(lm: LlamaExecutor, embeds: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states of a causal forward over ``embeds`` [B, L, D]."""
    cfg = lm.cfg
    B, L, _ = embeds.shape
    H, KV, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    cos_sin = rope_table(hd, cfg.rope_theta, L, embeds.device)
    x = embeds
    for layer in lm.model.layers:
        a, mlp = layer.self_attn, layer.mlp
        h = layer.input_layernorm(x)
        q = rope(a.q_proj(h).view(B, L, H, hd).transpose(1, 2), cos_sin)
        k = rope(a.k_proj(h).view(B, L, KV, hd).transpose(1, 2), cos_sin)
        v = a.v_proj(h).view(B, L, KV, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=KV != H)
        x = x + a.o_proj(out.transpose(1, 2).reshape(B, L, H * hd))
        h = layer.post_attention_layernorm(x)
        x = x + mlp.down_proj(F.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
    return lm.model.norm(x)


def action_logits(model: OpenVLA, pixels: torch.Tensor, prompts: list[list[int]], actions: torch.Tensor) -> torch.Tensor:
    """Logits [B, 7, vocab] that predict the 7 action tokens ``actions`` [B, 7] (teacher forcing)."""
    B = pixels.shape[0]
    patches = model.projector(model.vision_backbone(pixels))
    embed = model.language_model.model.embed_tokens
    n_patch = patches.shape[1]
    rows, first = [], []
    for b, prompt in enumerate(prompts):
        prompt = model.with_empty_token(prompt)
        text = embed(torch.tensor(prompt + actions[b, : ACTION_DIM - 1].tolist()))
        rows.append(torch.cat([text[:1], patches[b], text[1:]]))
        first.append(n_patch + len(prompt) - 1)  # the empty token predicts action 1
    L = max(r.shape[0] for r in rows)
    embeds = torch.stack([F.pad(r, (0, 0, 0, L - r.shape[0])) for r in rows])
    hidden = causal_hidden(model.language_model, embeds)
    idx = torch.tensor(first)[:, None] + torch.arange(ACTION_DIM)[None]
    picked = hidden[torch.arange(B)[:, None], idx]
    return model.language_model.lm_head(picked)


def action_tokens(normalized: np.ndarray, n_text_vocab: int, n_bins: int = 256) -> np.ndarray:
    """OpenVLA's ActionTokenizer: digitize [-1, 1] into 256 uniform bins; token = n_text_vocab − bin."""
    bins = np.linspace(-1, 1, n_bins)
    return n_text_vocab - np.digitize(np.clip(normalized, -1, 1), bins)
