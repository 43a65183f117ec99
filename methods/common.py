"""Token-layout helpers shared by methods: OpenVLA puts BOS at 0, visual tokens at 1..N, text after."""

from __future__ import annotations

import torch

IMAGE_START = 1  # slot of the first visual token (after BOS)
ATTN_LAYER = 15  # the layer whose text→vision attention VLA-Cache and LAC's language variant read


def visual_slots(n_visual: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.arange(IMAGE_START, IMAGE_START + n_visual, device=device)


def head_mean(probs: torch.Tensor) -> torch.Tensor:
    """[H, n_q, n_k] attention probabilities → head mean in fp32."""
    return probs.float().mean(0)


def text_to_vision(attn: torch.Tensor, query_slots: torch.Tensor, n_visual: int, text_rows: int) -> torch.Tensor:
    """Head-mean attention from the text queries (slots 257..257+text_rows) to each visual token."""
    a = head_mean(attn)
    start = IMAGE_START + n_visual
    rows = (query_slots >= start) & (query_slots < start + text_rows)
    return a[rows][:, IMAGE_START : IMAGE_START + n_visual].mean(0)
