"""Farnebäck dense optical flow in torch, following OpenCV's ``calcOpticalFlowFarneback`` step by step.

So LAC's motion input can run where the policy runs (a GPU) instead of on the host. Same algorithm and
parameters as ``methods.lac.flow.farneback`` (OpenCV, ``flags=0``), written as tensor ops:

1. grayscale as OpenCV's fixed-point RGB→GRAY on uint8;
2. a pyramid of levels while the image stays ≥ 32 px at ``pyr_scale`` steps; each level smooths the image with
   a Gaussian (σ = (1/scale − 1)/2, kernel ``round(5σ)|1`` ≥ 3; σ = 0 means OpenCV's fixed 3-tap [¼ ½ ¼];
   reflect-101 borders) and resizes it bilinearly;
3. polynomial expansion: per pixel, a Gaussian-weighted least-squares fit of a quadratic (separable
   correlations with g, x·g, x²·g over a (2n+1)² window, replicated borders), kept as 5 coefficients in
   OpenCV's (y, x, yy, xx, xy) order;
4. from the coarsest level, with the flow of the previous level upsampled ×1/pyr_scale: the displaced
   second expansion is sampled bilinearly, averaged with the first into the 2×2 system per pixel (damped
   within 5 px of the border), the system is box-averaged over ``winsize`` and solved; ``iterations`` times,
   rebuilding the system from the new flow between iterations.

Differences from OpenCV are float summation order (OpenCV sums some terms in double): see
``tests/test_lac.py`` for the measured agreement on LIBERO frames.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

BORDER_DAMPING = (0.14, 0.14, 0.4472, 0.4472, 0.4472)  # OpenCV's per-pixel weight within 5 px of an edge
MIN_LEVEL_SIZE = 32


def gray(rgb: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] uint8 RGB → [H, W] float32 luma, bit-exact to OpenCV's fixed-point ``COLOR_RGB2GRAY``."""
    r, g, b = rgb.to(torch.int32).unbind(-1)
    return ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).float()  # 0.299/0.587/0.114 in 15-bit fixed point


def gaussian_taps(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """OpenCV's ``getGaussianKernel``: the fixed small kernel for size 3 and σ ≤ 0, else a sampled Gaussian."""
    if sigma <= 0 and size == 3:
        return torch.tensor([0.25, 0.5, 0.25], device=device)
    sigma = sigma if sigma > 0 else 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def separable(img: torch.Tensor, taps: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate [C, H, W] with ``taps`` along H then W (odd length), borders padded by ``mode``."""
    r = taps.shape[0] // 2
    c = img.shape[0]
    x = F.pad(img[None], (0, 0, r, r), mode=mode)
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    x = F.pad(x, (r, r, 0, 0), mode=mode)
    return F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)[0]


@lru_cache
def poly_weights(n: int, sigma: float) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """The 1-D kernels g, x·g, x²·g and the entries ig11, ig03, ig33, ig55 of the inverse normal matrix (host
    constants, computed once per process)."""
    x = torch.arange(-n, n + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    w = gy * gx
    G = torch.zeros(6, 6, dtype=torch.float64)  # basis 1, x, y, x², y², xy
    G[0, 0] = w.sum()
    G[1, 1] = G[2, 2] = G[0, 3] = G[3, 0] = G[0, 4] = G[4, 0] = (w * xx**2).sum()
    G[3, 3] = G[4, 4] = (w * xx**4).sum()
    G[3, 4] = G[4, 3] = G[5, 5] = (w * xx**2 * yy**2).sum()
    inv = torch.linalg.inv(G)
    return torch.stack([g, x * g, x * x * g]).float(), (float(inv[1, 1]), float(inv[0, 3]), float(inv[3, 3]),
                                                         float(inv[5, 5]))


def poly_expansion(img: torch.Tensor, n: int, sigma: float) -> torch.Tensor:
    """[H, W] → [5, H, W] quadratic coefficients in OpenCV's order (y, x, yy, xx, xy)."""
    kernels, (ig11, ig03, ig33, ig55) = poly_weights(n, sigma)
    g, xg, xxg = (k.to(img.device) for k in kernels)
    c = F.pad(img[None, None], (0, 0, n, n), mode="replicate")
    rows = F.conv2d(c, torch.stack([g, xg, xxg]).view(3, 1, -1, 1))  # vertical: 1, y, y² moments
    rows = F.pad(rows, (n, n, 0, 0), mode="replicate")

    def horizontal(channel: int, taps: torch.Tensor) -> torch.Tensor:
        return F.conv2d(rows[:, channel : channel + 1], taps.view(1, 1, 1, -1))[0, 0]

    b1, b2, b3 = horizontal(0, g), horizontal(0, xg), horizontal(1, g)
    b4, b5, b6 = horizontal(0, xxg), horizontal(2, g), horizontal(1, xg)
    return torch.stack([b3 * ig11, b2 * ig11, b1 * ig03 + b5 * ig33, b1 * ig03 + b4 * ig33, b6 * ig55])


def border_damping(h: int, w: int, device: torch.device) -> torch.Tensor:
    """[H, W] weight: 1 inside, OpenCV's table within 5 px of each edge (multiplied at corners)."""
    def axis(size: int) -> torch.Tensor:
        s = torch.ones(size, device=device)
        table = torch.tensor(BORDER_DAMPING, device=device)
        k = min(len(BORDER_DAMPING), size)
        s[:k] = table[:k]
        s[size - k :] = s[size - k :] * table[:k].flip(0)
        return s

    return axis(h)[:, None] * axis(w)[None, :]


def system(r0: torch.Tensor, r1: torch.Tensor, flow: torch.Tensor, damping: torch.Tensor) -> torch.Tensor:
    """[5, H, W]: the per-pixel 2×2 system (G11, G12, G22, h1, h2) for the current ``flow`` [2, H, W]."""
    _, h, w = r0.shape
    dx, dy = flow[0], flow[1]
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device), torch.arange(w, device=flow.device), indexing="ij")
    fx, fy = xs + dx, ys + dy
    x1, y1 = fx.floor(), fy.floor()
    ax, ay = fx - x1, fy - y1
    inside = (x1 >= 0) & (x1 < w - 1) & (y1 >= 0) & (y1 < h - 1)
    x1 = x1.long().clamp(0, w - 2)
    y1 = y1.long().clamp(0, h - 2)
    flat = r1.reshape(5, -1)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return flat[:, (yi * w + xi).reshape(-1)].reshape(5, h, w)

    s = ((1 - ax) * (1 - ay) * at(y1, x1) + ax * (1 - ay) * at(y1, x1 + 1)
         + (1 - ax) * ay * at(y1 + 1, x1) + ax * ay * at(y1 + 1, x1 + 1))
    r2 = torch.where(inside, s[0], 0.0)
    r3 = torch.where(inside, s[1], 0.0)
    r4 = torch.where(inside, (r0[2] + s[2]) * 0.5, r0[2])
    r5 = torch.where(inside, (r0[3] + s[3]) * 0.5, r0[3])
    r6 = torch.where(inside, (r0[4] + s[4]) * 0.25, r0[4] * 0.5)
    r2 = (r0[0] - r2) * 0.5 + r4 * dy + r6 * dx
    r3 = (r0[1] - r3) * 0.5 + r6 * dy + r5 * dx
    r2, r3, r4, r5, r6 = (v * damping for v in (r2, r3, r4, r5, r6))
    return torch.stack([r4 * r4 + r6 * r6, (r4 + r5) * r6, r5 * r5 + r6 * r6, r4 * r2 + r6 * r3, r6 * r2 + r5 * r3])


def solve(m: torch.Tensor, winsize: int) -> torch.Tensor:
    """Box-average the system over ``winsize``² (replicated borders) and solve it: [5, H, W] → flow [2, H, W]."""
    r = winsize // 2
    avg = F.avg_pool2d(F.pad(m[None].double(), (r, r, r, r), mode="replicate"), winsize, stride=1)[0]  # as OpenCV: double
    g11, g12, g22, h1, h2 = avg
    idet = 1.0 / (g11 * g22 - g12 * g12 + 1e-3)
    return torch.stack([(g11 * h2 - g12 * h1) * idet, (g22 * h1 - g12 * h2) * idet]).float()


def farneback(prev: torch.Tensor, cur: torch.Tensor, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15,
              iterations: int = 3, poly_n: int = 5, poly_sigma: float = 1.2) -> torch.Tensor:
    """[H, W, 2] float32 flow (dx, dy) from ``prev`` to ``cur`` ([H, W, 3] uint8 RGB tensors, any device)."""
    images = [gray(prev), gray(cur)]
    h0, w0 = images[0].shape
    top, scale = 0, 1.0
    while top < levels and min(h0, w0) * scale * pyr_scale >= MIN_LEVEL_SIZE:
        scale *= pyr_scale
        top += 1
    flow = None
    for k in range(top, -1, -1):
        scale = pyr_scale**k
        sigma = (1 / scale - 1) * 0.5
        size = max(round(sigma * 5) | 1, 3)  # Python's round is half-to-even, as OpenCV's cvRound
        h, w = round(h0 * scale), round(w0 * scale)
        taps = gaussian_taps(size, sigma, prev.device)
        expansions = []
        for img in images:
            smooth = separable(img[None], taps, "reflect")
            level = F.interpolate(smooth[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            expansions.append(poly_expansion(level, poly_n, poly_sigma))
        if flow is None:
            flow = torch.zeros(2, h, w, device=prev.device)
        else:
            flow = F.interpolate(flow[None], size=(h, w), mode="bilinear", align_corners=False)[0] / pyr_scale
        damping = border_damping(h, w, prev.device)
        m = system(expansions[0], expansions[1], flow, damping)
        for i in range(iterations):
            flow = solve(m, winsize)
            if i < iterations - 1:
                m = system(expansions[0], expansions[1], flow, damping)
    return flow.permute(1, 2, 0)

