"""Whole-step MAC accounting for a preset: the model run on the meta device with a meter (no weights)."""

from __future__ import annotations

import torch

from bench.core.flops import MacMeter
from bench.core.models.openvla import ACTION_DIM
from bench.core.models.presets import build, build_cogact, preset


def policy_step_macs(preset_name: str, text_tokens: int) -> MacMeter:
    """MACs of one baseline OpenVLA step for a preset, executed on the meta device (no weights needed).

    ``text_tokens`` counts the prompt tokens after BOS (including the appended empty token), so the
    prefill length is n = 1 + 256 + text_tokens.
    """
    model = build(preset(preset_name), device="meta")
    lm, meter = model.language_model, MacMeter()
    pixels = torch.empty(1, 6, 224, 224, device="meta")
    ids = torch.zeros(1, 1 + text_tokens, dtype=torch.long, device="meta")
    embeds = model.prefill_embeddings(pixels, ids, meter)
    n = embeds.shape[1]
    cache = model.new_cache(n)
    hidden, _ = lm.prefill(embeds, cache, None, meter)
    token = torch.zeros(1, dtype=torch.long, device="meta")
    for i in range(ACTION_DIM):
        lm.logits(hidden, meter)
        if i + 1 < ACTION_DIM:
            hidden = lm.decode(token, n + i, n + i, cache, meter)
    return meter


def cogact_step_macs(preset_name: str, text_tokens: int) -> MacMeter:
    """MACs of one baseline CogACT step on the meta device: vision, one prefill (prompt + empty + cognition token),
    and the DiT over DDIM steps × the CFG batch of 2; no decode. ``text_tokens`` counts prompt tokens after BOS
    without the two appended ones (n = 1 + 256 + text_tokens + 2)."""
    model = build_cogact(preset_name, device="meta")
    meter = MacMeter()
    pixels = torch.empty(1, 6, 224, 224, device="meta")
    ids = torch.zeros(1, 1 + text_tokens + 2, dtype=torch.long, device="meta")
    embeds = model.prefill_embeddings(pixels, ids, meter)
    cognition, _ = model.language_model.prefill(embeds, model.new_cache(embeds.shape[1]), None, meter)
    dit = model.head.dit
    model.sample_chunk(cognition, torch.empty(1, dit.chunk, dit.action_dim, device="meta"), meter)
    return meter
