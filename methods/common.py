"""Token-layout helpers shared by methods: OpenVLA puts BOS at 0, visual tokens at 1..N, text after."""

from __future__ import annotations

import torch

IMAGE_START = 1  # slot of the first visual token (after BOS)


def visual_slots(n_visual: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.arange(IMAGE_START, IMAGE_START + n_visual, device=device)


def head_mean(probs: torch.Tensor) -> torch.Tensor:
    """[H, n_q, n_k] attention probabilities → head mean in fp32."""
    return probs.float().mean(0)
