"""Whole-step MAC accounting for a preset: the model run on the meta device with a meter (no weights)."""

from __future__ import annotations

import torch

from bench.core.flops import MacMeter
from bench.core.models.openvla import ACTION_DIM
from bench.core.models.presets import build, preset


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
