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


def text_to_vision(attn: torch.Tensor, query_slots: torch.Tensor, n_visual: int, text_rows: int,
                   n_prefill: int) -> torch.Tensor:
    """Head-mean attention from the text queries (slots 257..257+text_rows) to each visual token.

    Text rows are never pruned or reused, so ``min(text_rows, n_prefill − 257)`` queries match (host-known).
    """
    a = head_mean(attn)
    start = IMAGE_START + n_visual
    rows = (query_slots >= start) & (query_slots < start + text_rows)
    n_rows = min(text_rows, n_prefill - start)
    return ordered_subset(a, rows, n_rows)[:, IMAGE_START : IMAGE_START + n_visual].mean(0)


def ordered_subset(items: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """``items[mask]`` when the host already knows ``n = mask.sum()``: same elements, same order, but gathered
    by index, so a GPU need not wait for the mask's values to learn the output shape."""
    return items[torch.argsort(mask.to(torch.uint8), descending=True, stable=True)[:n]]
