"""CogACT's action head: a DiT over the 16×7 action chunk, conditioned on the VLM's cognition feature.

Written from microsoft/CogACT ``action_model/models.py`` (itself facebookresearch/DiT): the sequence is
``[c, a_0 … a_15]`` with ``c = t_emb + z_emb`` (no adaLN: conditioning is the first token), learned positional
embeddings, pre-norm blocks (LayerNorm without affine, timm ``Attention`` with qkv bias, tanh-GELU ``Mlp``),
a final LayerNorm + linear, and the first position dropped from the output. Parameter names are the reference's
(``net.x_embedder.linear.weight`` …), so its ``action_model`` state dict loads unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.core.flops import MacMeter
from bench.core.models.vit import Attention, Mlp


@dataclass(frozen=True)
class DiTConfig:
    hidden_size: int
    depth: int
    num_heads: int
    token_size: int  # the VLM's hidden size (the cognition feature)
    action_dim: int = 7
    future_action_window_size: int = 15  # the chunk is future + 1 = 16 actions
    mlp_ratio: float = 4.0
    frequency_embedding_size: int = 256

    @property
    def chunk(self) -> int:
        return self.future_action_window_size + 1


# CogACT's ``DiT_models`` (action_model/action_model.py): DiT-S, DiT-B, DiT-L.
DIT_SIZES = {"DiT-S": (384, 6, 4), "DiT-B": (768, 12, 12), "DiT-L": (1024, 24, 16)}


def dit_config(size: str, token_size: int) -> DiTConfig:
    hidden, depth, heads = DIT_SIZES[size]
    return DiTConfig(hidden, depth, heads, token_size)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """GLIDE's sinusoidal embedding, ``[cos | sin]``, computed in fp32 as the reference does."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class Linear1(nn.Module):
    """A module holding one ``linear`` (the reference's ``ActionEmbedder``/``HistoryEmbedder``/``FinalLayer``)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """The condition's projection, and the learned ``uncondition`` that classifier-free guidance swaps in."""

    def __init__(self, token_size: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(token_size, hidden)
        self.uncondition = nn.Parameter(torch.zeros(1, token_size))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), gelu="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_size
        self.history_embedder = Linear1(cfg.action_dim, h)  # in the reference's state dict; unused there too
        self.x_embedder = Linear1(cfg.action_dim, h)
        self.t_embedder = TimestepEmbedder(h, cfg.frequency_embedding_size)
        self.z_embedder = LabelEmbedder(cfg.token_size, h)
        self.positional_embedding = nn.Parameter(h**-0.5 * torch.randn(cfg.chunk + 1, h))
        self.blocks = nn.ModuleList(DiTBlock(h, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final_layer = Linear1(h, cfg.action_dim)
        self.final_norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)  # ``final_layer.norm_final``: no weights

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x [N, 16, 7] noisy actions, t [N] timesteps (original schedule's), z [N, 1, token_size] → ε̂ [N, 16, 7]."""
        c = self.t_embedder(t).unsqueeze(1) + self.z_embedder.linear(z)
        h = torch.cat([c, self.x_embedder.linear(x)], dim=1) + self.positional_embedding
        for block in self.blocks:
            h = block(h)
        return self.final_layer.linear(self.final_norm(h))[:, 1:]

    def guided_eps(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor, scale: float) -> torch.Tensor:
        """``forward_with_cfg``: x and z hold [conditional; unconditional] halves; the first half of x is run
        under both conditions and ε = ε_u + s·(ε_c − ε_u) is returned for both halves."""
        half = x[: len(x) // 2]
        eps = self.forward(torch.cat([half, half]), t, z)
        cond, uncond = eps.chunk(2)
        guided = uncond + scale * (cond - uncond)
        return torch.cat([guided, guided])

    def count_macs(self, meter: MacMeter, batch: int) -> None:
        """MACs of one forward over ``batch`` sequences of chunk+1 positions (region ``action_head``)."""
        c, h, n = self.cfg, self.cfg.hidden_size, self.cfg.chunk + 1
        per_block = n * (12 * h * h) + 2 * n * n * h  # qkv 3h², proj h², mlp 8h² per row; QKᵀ and AV
        macs = c.chunk * c.action_dim * h + c.frequency_embedding_size * h + h * h + c.token_size * h
        macs += c.depth * per_block + n * h * c.action_dim
        meter.add("action_head", batch * macs)
