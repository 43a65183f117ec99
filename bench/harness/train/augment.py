"""OpenVLA's training image augmentation, batched on the training device.

OpenVLA (dlimp ``augment_image``) applies, in order: ``random_resized_crop`` (scale 0.9, ratio 1: a square
box of 0.9 area at a uniformly random position, ``tf.image.crop_and_resize`` bilinear back to 224),
``random_brightness`` 0.2, ``random_contrast`` [0.8, 1.2], ``random_saturation`` [0.8, 1.2], ``random_hue``
0.05, clipping to [0, 1] after each. The crop here uses the same box geometry as the evaluation's
``bench/core/models/image_chain.py:center_crop``, so a box at the centre reproduces the evaluation input (pinned in a test).
"""

from __future__ import annotations

import math

import torch

from bench.core.models.image_chain import CROP_AREA

AUGMENTATIONS = ("none", "crop", "crop+color")


def crop_resize(images: torch.Tensor, top_left: torch.Tensor, area: float = CROP_AREA) -> torch.Tensor:
    """``crop_and_resize`` of a square box of ``area`` whose top-left corner is ``top_left`` [B, 2] (normalised
    y, x in [0, 1 − side]), bilinear, back to the input size. ``images`` [B, H, W, C] uint8 → float in [0, 1]."""
    B, H, W, _ = images.shape
    side = math.sqrt(area)
    x = images.float() / 255.0
    steps_y = torch.arange(H, device=images.device, dtype=torch.float32) * side
    steps_x = torch.arange(W, device=images.device, dtype=torch.float32) * side
    pos_y = top_left[:, :1].float() * (H - 1) + steps_y[None]  # [B, H]
    pos_x = top_left[:, 1:].float() * (W - 1) + steps_x[None]  # [B, W]
    y0, y1, fy = _neighbours(pos_y, H)
    x0, x1, fx = _neighbours(pos_x, W)
    b = torch.arange(B, device=images.device)[:, None]
    rows0, rows1 = x[b, y0], x[b, y1]  # [B, H, W, C]
    bb, hh = b[:, :, None], torch.arange(H, device=images.device)[None, :, None]

    def cols(rows: torch.Tensor) -> torch.Tensor:
        left, right = rows[bb, hh, x0[:, None, :]], rows[bb, hh, x1[:, None, :]]
        return left + (right - left) * fx[:, None, :, None]

    top, bottom = cols(rows0), cols(rows1)
    return (top + (bottom - top) * fy[:, :, None, None]).clamp(0.0, 1.0)


def _neighbours(pos: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lo = pos.floor()
    return lo.long(), pos.ceil().clamp(max=n - 1).long(), pos - lo


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``convert_image_dtype(uint8, saturate=True)`` as ``center_crop`` does it."""
    return (x * 255.5).clamp(0, 255).to(torch.uint8)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-1)
    v, _ = x.max(-1)
    m, _ = x.min(-1)
    c = v - m
    s = torch.where(v > 0, c / v.clamp(min=1e-12), torch.zeros_like(v))
    safe = c.clamp(min=1e-12)
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(c > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], -1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(-1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def colour_jitter(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Brightness ±0.2, contrast ×[0.8, 1.2], saturation ×[0.8, 1.2], hue ±0.05 turn; one draw per image."""
    B = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(B, device=x.device, generator=generator)
        return (lo + (hi - lo) * u)[:, None, None, None]

    x = (x + uniform(-0.2, 0.2)).clamp(0, 1)
    mean = x.mean(dim=(1, 2), keepdim=True)
    x = ((x - mean) * uniform(0.8, 1.2) + mean).clamp(0, 1)
    hsv = rgb_to_hsv(x)
    sat = (hsv[..., 1:2] * uniform(0.8, 1.2)[..., 0:1]).clamp(0, 1)
    hue = (hsv[..., 0:1] + uniform(-0.05, 0.05)[..., 0:1]) % 1.0
    return hsv_to_rgb(torch.cat([hue, sat, hsv[..., 2:]], -1)).clamp(0, 1)


def augment(images: torch.Tensor, kind: str, generator: torch.Generator | None, area: float = CROP_AREA) -> torch.Tensor:
    """Training input for a batch of uint8 frames [B, H, W, C]: ``kind`` is one of ``AUGMENTATIONS``;
    "none" is the evaluation's centre crop."""
    B = images.shape[0]
    free = 1.0 - math.sqrt(area)
    if kind == "none":
        top_left = torch.full((B, 2), free / 2, device=images.device)
    else:
        top_left = torch.rand(B, 2, device=images.device, generator=generator) * free
    x = crop_resize(images, top_left, area)
    if kind == "crop+color":
        x = colour_jitter(x, generator)
    return to_uint8(x)
