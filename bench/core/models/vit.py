"""A timm-compatible VisionTransformer (parameter names as timm and OpenVLA checkpoints use them).

Native so that shapes are counted and the module builds on the meta device; ``tests/test_vision.py``
checks it against timm itself on the same weights. Prismatic takes the output of block ``depth − 2``
(``get_intermediate_layers(n={depth-2})``), patch tokens only, no final norm. The reference runs the last
block too and throws it away; we stop after the block we return (same output, less work) and say so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.flops import MacMeter
from bench.core.models.config import ViTConfig


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.ones(dim))  # timm calls it gamma; OpenVLA renames it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Attention(nn.Module):
    """timm ``Attention``: fused qkv with bias, SDPA over all positions (no mask), output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """timm ``Mlp``: fc1, GELU (exact, or ``gelu="tanh"`` as DiT's), fc2."""

    def __init__(self, dim: int, hidden: int, gelu: str = "none") -> None:
        super().__init__()
        self.gelu = gelu
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.gelu))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads)
        self.ls1 = LayerScale(d) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_hidden)
        self.ls2 = LayerScale(d) if cfg.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n_patches = cfg.embed_dim, cfg.grid**2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, d)) if cfg.reg_tokens else None
        pos_len = n_patches if cfg.no_embed_class else n_patches + cfg.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, pos_len, d) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)  # unused by Prismatic; kept for checkpoint fidelity

    def _prefix(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        return [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]

    def forward(self, pixels: torch.Tensor, meter: MacMeter | None = None) -> torch.Tensor:
        """[B, 3, H, W] → patch features of block ``depth − 2``: [B, grid², embed_dim]."""
        cfg = self.cfg
        x = self.patch_embed(pixels)
        if cfg.no_embed_class:
            x = torch.cat([*self._prefix(x), x + self.pos_embed], dim=1)
        else:
            x = torch.cat([*self._prefix(x), x], dim=1) + self.pos_embed
        for block in self.blocks[: cfg.depth - 1]:
            x = block(x)
        if meter is not None:
            self.count(meter, pixels.shape[0])
        return x[:, cfg.num_prefix_tokens :]

    def count(self, meter: MacMeter, batch: int = 1) -> None:
        cfg = self.cfg
        n, d = batch * (cfg.grid**2 + cfg.num_prefix_tokens), cfg.embed_dim
        meter.linear("vision", batch * cfg.grid**2, 3 * cfg.patch_size**2, d)
        per_block = 4 * n * d * d + 2 * n * (n // batch) * d + 2 * n * d * cfg.mlp_hidden
        meter.add("vision", (cfg.depth - 1) * per_block)
