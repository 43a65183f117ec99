"""LAC's two small modules on a shared CNN trunk over [RGB; motion] at 224 px → the 16×16 token grid.

Cached Token Selector: one score in [0, 1] per visual token (high = recompute).
Cache Ratio Predictor: logits over a discrete set of cache ratios (the share of tokens whose K/V are reused).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CANDIDATE_RATIOS = (0.2, 0.4, 0.5, 0.6, 0.8)


class LACNet(nn.Module):
    def __init__(self, in_channels: int = 5, width: int = 48, n_ratios: int = len(CANDIDATE_RATIOS)) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, width // 2, 7, stride=2, padding=3), nn.ReLU(),  # 224 → 112
            nn.Conv2d(width // 2, width, 7, stride=7), nn.ReLU(),  # 112 → 16: one cell per visual token
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        )
        self.selector = nn.Conv2d(width, 1, 1)
        self.predictor = nn.Linear(width, n_ratios)

    def macs(self, size: int = 224) -> int:
        """Multiply-accumulates of one forward at ``size`` px (convolutions and the two heads)."""
        total, hw = 0, size
        for layer in self.trunk:
            if isinstance(layer, nn.Conv2d):
                hw = (hw + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
                total += hw * hw * layer.out_channels * layer.in_channels * layer.kernel_size[0] ** 2
        return total + hw * hw * self.selector.in_channels + self.predictor.in_features * self.predictor.out_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C, 224, 224] → (scores [B, 256] in [0, 1], ratio logits [B, n_ratios])."""
        h = self.trunk(x)
        scores = torch.sigmoid(self.selector(h)).flatten(1)
        return scores, self.predictor(F.adaptive_avg_pool2d(h, 1).flatten(1))


def gumbel_ratio(logits: torch.Tensor, ratios: torch.Tensor, tau: float, hard: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-softmax over the candidate ratios (Eq. 9) with a straight-through hard one-hot (Eq. 10).

    Returns (p̃ [B, C] — one-hot forward, soft gradients —, the expected ratio Σ p̃_j r_j [B]).
    """
    p = F.gumbel_softmax(logits, tau=tau, hard=hard)
    return p, (p * ratios).sum(-1)


def soft_cache_mask(scores: torch.Tensor, ratio: torch.Tensor, tau_s: float) -> torch.Tensor:
    """Recompute mask m (1 = recompute) for caching the ratio·N lowest scores (Eq. 11).

    θ is the score at fractional rank ratio·N (linear interpolation of the sorted scores, so gradients reach
    the ratio too); forward is the hard top-k mask, backward the steep sigmoid σ((s − θ)/τ_s).
    """
    n = scores.shape[-1]
    sorted_s = scores.sort(-1).values
    pos = (ratio * n - 0.5).clamp(0, n - 1)
    lo = pos.floor().long().clamp(max=n - 2)
    frac = pos - lo
    theta = torch.lerp(sorted_s.gather(-1, lo[:, None]), sorted_s.gather(-1, lo[:, None] + 1), frac[:, None])
    soft = torch.sigmoid((scores - theta) / tau_s)
    k = torch.round(ratio * n).long()
    ranks = scores.argsort(-1).argsort(-1)
    hard = (ranks >= k[:, None]).to(scores.dtype)  # the k lowest scores are cached
    return hard + (soft - soft.detach())  # exactly the hard mask forward; sigmoid gradients backward
