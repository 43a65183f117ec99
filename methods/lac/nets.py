"""LAC's two small modules over V_t = [RGB; motion] at 224 px.

Cached Token Selector f_sel: a CNN trunk down to the 16×16 token grid, one score in [0, 1] per visual token
  (high = recompute).
Cache Ratio Predictor f_pred: its own small CNN over V_t at 56 px (the flow channels scaled ×32 so that motion,
  a few hundredths of the input range, is not drowned by colour), pooled to logits over a discrete set of
  cache ratios (the share of tokens whose K/V are reused). It does not read the selector's trunk: pooled trunk
  features carried no motion information (docs/lac.md), and the ratio must respond to motion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CANDIDATE_RATIOS = (0.2, 0.4, 0.5, 0.6, 0.8)
FLOW_GAIN = 32.0  # predictor input: flow/8 px × 32 = flow in quarter pixels


def conv_macs(layers: nn.Sequential, size: int) -> tuple[int, int]:
    """(multiply-accumulates of the convolutions in ``layers`` at ``size`` px input, output size)."""
    total, hw = 0, size
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            hw = (hw + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
            total += hw * hw * layer.out_channels * layer.in_channels * layer.kernel_size[0] ** 2
        elif isinstance(layer, nn.AvgPool2d):
            hw //= layer.kernel_size
    return total, hw


class RatioPredictor(nn.Module):
    def __init__(self, in_channels: int = 5, width: int = 32, n_ratios: int = len(CANDIDATE_RATIOS)) -> None:
        super().__init__()
        self.register_buffer("gain", torch.tensor([1.0] * 3 + [FLOW_GAIN] * (in_channels - 3)).view(1, -1, 1, 1),
                             persistent=False)
        self.pool = nn.AvgPool2d(4)  # 224 → 56
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width // 2, 5, stride=2, padding=2), nn.ReLU(),  # 56 → 28
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(),  # 28 → 14
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(width, n_ratios)

    def pooled_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.float())

    def from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pooled * self.gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(self.pooled_input(x))

    def macs(self, size: int = 224) -> int:
        total, _ = conv_macs(nn.Sequential(self.pool, *self.features), size)
        return total + self.head.in_features * self.head.out_features


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
        self.predictor = RatioPredictor(in_channels, n_ratios=n_ratios)

    def macs(self, size: int = 224) -> int:
        """Multiply-accumulates of one forward at ``size`` px (convolutions and the two heads)."""
        trunk, hw = conv_macs(self.trunk, size)
        return trunk + hw * hw * self.selector.in_channels + self.predictor.macs(size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C, 224, 224] → (scores [B, 256] in [0, 1], ratio logits [B, n_ratios])."""
        scores = torch.sigmoid(self.selector(self.trunk(x))).flatten(1)
        return scores, self.predictor(x)


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
