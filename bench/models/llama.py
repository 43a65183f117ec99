"""Llama decoder as a compute-plan executor (after gpt-fast: a slot-indexed static KV cache).

Parameter names match ``transformers``' LlamaForCausalLM so HF weights load as they are. The prefill
runs the rows a :class:`~bench.models.steering.Steering` leaves computed; keys are every *live* slot of
the layer's cache (computed now or reused from the previous control step). Attention is SDPA; for the
layers a method asks statistics from, probabilities are computed *beside* it (the layer output stays the
SDPA one, so asking for statistics never changes the numbers).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.config import LlamaConfig
from bench.models.steering import PrefillState, Steering
from bench.profiler.flops import MacMeter


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_table(head_dim: int, theta: float, n_pos: int, device: torch.device) -> torch.Tensor:
    """cos/sin for positions 0..n_pos−1, [2, n_pos, head_dim] in fp32, as HF Llama computes them."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.int64).float() / head_dim))
    freqs = torch.arange(n_pos, device=device).float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return torch.stack([emb.cos(), emb.sin()])


def rope(x: torch.Tensor, cos_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (rotate_half convention) with cos/sin already gathered at the rows' positions."""
    hd = x.shape[-1]
    cos, sin = cos_sin[0].to(x.dtype), cos_sin[1].to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class KVCache:
    """Per-episode static cache: K/V, RoPE position and key visibility per (layer, slot)."""

    def __init__(self, cfg: LlamaConfig, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (1, cfg.num_key_value_heads, capacity, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)]
        self.pos = torch.zeros(cfg.num_hidden_layers, capacity, dtype=torch.long, device=device)
        self.live = torch.zeros(cfg.num_hidden_layers, capacity, dtype=torch.bool, device=device)
        self.rope = rope_table(cfg.head_dim, cfg.rope_theta, capacity + 64, device)
        self.n_live = [0] * cfg.num_hidden_layers  # live key count per layer (Python ints: no GPU sync)
        self.capacity = capacity
        self.n_prefill = 0  # prefill length of the episode (fixed: the prompt does not change)
        self.steps = 0  # completed control steps whose K/V the cache holds

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> None:
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or self.k[layer].requires_grad):
            # out of place: autograd may still need the old tensor (soft-mix training)
            self.k[layer] = self.k[layer].index_copy(2, slots, k)
            self.v[layer] = self.v[layer].index_copy(2, slots, v)
        else:
            self.k[layer].index_copy_(2, slots, k)
            self.v[layer].index_copy_(2, slots, v)
        self.pos[layer, slots] = pos


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, kv = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
        self.input_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, d, bias=False)
        self.self_attn.k_proj = nn.Linear(d, kv, bias=False)
        self.self_attn.v_proj = nn.Linear(d, kv, bias=False)
        self.self_attn.o_proj = nn.Linear(d, d, bias=False)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, cfg.intermediate_size, bias=False)
        self.mlp.up_proj = nn.Linear(d, cfg.intermediate_size, bias=False)
        self.mlp.down_proj = nn.Linear(cfg.intermediate_size, d, bias=False)

    def forward(
        self,
        layer: int,
        x: torch.Tensor,
        slots: torch.Tensor,
        pos: torch.Tensor,
        cache: KVCache,
        *,
        plain: bool,
        n_keys: int,
        causal: bool = True,
        soft_mix: torch.Tensor | None = None,
        want_probs: bool = False,
        meter: MacMeter | None = None,
        region: str = "prefill",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the rows ``x`` (at ``slots``/``pos``) through the layer.

        ``plain``: the rows are exactly the live slots in position order (a causal square prefill), so
        SDPA runs on the fresh K/V with ``is_causal``. Otherwise the queries attend to every live slot
        of the cache, masked by position order when ``causal``. Attention probabilities (``want_probs``)
        have one column per cache slot. Nothing here reads tensor values back to Python (no GPU sync;
        works on the meta device), so ``n_keys`` is passed in for the MAC count.
        """
        cfg, a = self.cfg, self.self_attn
        n, H, KV, hd = x.shape[1], cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        h = self.input_layernorm(x)
        q = a.q_proj(h).view(1, n, H, hd).transpose(1, 2)
        k = a.k_proj(h).view(1, n, KV, hd).transpose(1, 2)
        v = a.v_proj(h).view(1, n, KV, hd).transpose(1, 2)
        cos_sin = cache.rope[:, pos]
        q, k = rope(q, cos_sin), rope(k, cos_sin)
        if soft_mix is not None:
            m = soft_mix[slots].to(k.dtype)[None, None, :, None]
            k = m * k + (1 - m) * cache.k[layer][:, :, slots].detach()
            v = m * v + (1 - m) * cache.v[layer][:, :, slots].detach()
        cache.write(layer, slots, k, v, pos)
        gqa = KV != H
        if plain and causal:
            keys, mask = k, None
            out = F.scaled_dot_product_attention(q, k, v, is_causal=bool(n > 1), enable_gqa=gqa)
        else:
            keys, values = cache.k[layer], cache.v[layer]
            mask = cache.live[layer][None, :].expand(n, -1)
            if causal:
                mask = mask & (cache.pos[layer][None, :] <= pos[:, None])
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=gqa)
        probs = None
        if want_probs:
            kk = keys.repeat_interleave(H // KV, dim=1) if gqa else keys
            scores = (q.float() @ kk.float().transpose(-1, -2)) / math.sqrt(hd)
            if mask is None and n > 1:
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(-1)[0]
        x = x + a.o_proj(out.transpose(1, 2).reshape(1, n, H * hd))
        h = self.post_attention_layernorm(x)
        x = x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))
        if meter is not None:
            d, m_ = cfg.hidden_size, cfg.intermediate_size
            meter.add(region, 2 * n * d * d + 2 * n * d * KV * hd + 2 * n * n_keys * d + 3 * n * d * m_)
            if want_probs:
                meter.add("method_attn_stats", n * n_keys * d)
            if region == "prefill":
                meter.add_paper_layer(n, d, m_)
        return x, probs


class LlamaModel(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaExecutor(nn.Module):
    """``language_model`` of an OpenVLA checkpoint: ``model.*`` and ``lm_head``."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def new_cache(self, capacity: int) -> KVCache:
        w = self.lm_head.weight
        return KVCache(self.cfg, capacity, w.dtype, w.device)

    def prefill(
        self,
        embeds: torch.Tensor,
        cache: KVCache,
        steering: Steering | None = None,
        meter: MacMeter | None = None,
        soft_mix: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, PrefillState]:
        """Run the prefill over ``embeds`` [1, L, D] under the steering's plan.

        Returns the final-norm hidden state of the last prompt token (slot L−1) and the final state.
        """
        steering = steering or Steering()
        n_prefill = cache.n_prefill = embeds.shape[1]
        dev = embeds.device
        live = torch.zeros(cache.capacity, dtype=torch.bool, device=dev)
        live[:n_prefill] = True
        slots = torch.arange(n_prefill, device=dev)
        state = PrefillState(0, embeds, slots, slots.clone(), live, n_prefill, n_live=n_prefill,
                             soft_mix=soft_mix, can_reuse=cache.steps > 0)
        hooks = time.perf_counter
        hook_s = 0.0
        for layer, block in enumerate(self.model.layers):
            t0 = hooks()
            steering.at_layer(state)
            hook_s += hooks() - t0
            state.computed_per_layer.append(state.slots)
            cache.live[layer] = state.live
            cache.n_live[layer] = state.n_live
            want = layer in steering.attention_layers
            x, probs = block(layer, state.x, state.slots, state.pos, cache, plain=state.plain, n_keys=state.n_live,
                             causal=steering.causal, soft_mix=soft_mix, want_probs=want, meter=meter)
            state = state.next_layer(x, probs if want else None)
        t0 = hooks()
        steering.at_layer(state)
        state.hook_seconds = hook_s + hooks() - t0  # host time in the method's layer hooks
        last = state.row_of(n_prefill - 1)
        return self.model.norm(state.x[:, last]), state

    def decode(self, token: torch.Tensor, slot: int, pos: int | list[int], cache: KVCache,
               meter: MacMeter | None) -> torch.Tensor:
        """One greedy decode step for ``token`` ([1] long) at ``slot``; returns its final hidden.

        ``pos`` is its RoPE position, or one per layer (SparseVLM numbers positions by each layer's length).
        """
        x = self.model.embed_tokens(token)[None]
        s = torch.tensor([slot], device=x.device)
        per_layer = pos if isinstance(pos, list) else [pos] * len(self.model.layers)
        cache.live[:, slot] = True
        for layer, block in enumerate(self.model.layers):
            cache.n_live[layer] += 1
            p = torch.tensor([per_layer[layer]], device=x.device)
            x, _ = block(layer, x, s, p, cache, plain=False, n_keys=cache.n_live[layer], causal=False,
                         meter=meter, region="decode")
        return self.model.norm(x[:, 0])

    def logits(self, hidden: torch.Tensor, meter: MacMeter | None) -> torch.Tensor:
        if meter is not None:
            meter.linear("lm_head", hidden.shape[0], self.cfg.hidden_size, self.cfg.vocab_size)
        return self.lm_head(hidden)
