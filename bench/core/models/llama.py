"""Llama decoder as a compute-plan executor (after gpt-fast: a slot-indexed static KV cache).

Parameter names match ``transformers``' LlamaForCausalLM so HF weights load as they are. The prefill
runs the rows a :class:`~bench.core.models.steering.Steering` leaves computed; keys are every *live* slot of
the layer's cache (computed now or reused from the previous control step). Attention is SDPA; for the
layers a method asks statistics from, probabilities are computed *beside* it (the layer output stays the
SDPA one, so asking for statistics never changes the numbers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.flops import MacMeter
from bench.core.models.config import LlamaConfig
from bench.core.models.steering import PrefillState, Steering


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
        if device.type == "cuda":  # fixed addresses: the compiled decode's CUDA graphs read and write them in place
            for t in (*self.k, *self.v, self.pos, self.live):
                torch._dynamo.mark_static_address(t)

    def clear(self) -> None:
        """Back to the state of a new cache, in place (tensors keep their addresses across episodes)."""
        for t in (*self.k, *self.v, self.pos, self.live):
            t.zero_()
        self.n_live = [0] * len(self.k)
        self.n_prefill = self.steps = 0

    def copy(self) -> KVCache:
        """An independent cache with the same contents (LAC's ratio table scores every candidate ratio against one
        full prefill of the previous frame instead of recomputing it per candidate)."""
        new = object.__new__(KVCache)
        new.__dict__.update(self.__dict__)
        new.k, new.v = [t.clone() for t in self.k], [t.clone() for t in self.v]
        new.pos, new.live, new.n_live = self.pos.clone(), self.live.clone(), list(self.n_live)
        return new

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> None:
        self.k[layer] = write_slots(self.k[layer], slots, k)
        self.v[layer] = write_slots(self.v[layer], slots, v)
        self.pos[layer, slots] = pos


def write_slots(store: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``store`` [1, KV, capacity, hd] with ``rows`` written at ``slots``; in place unless autograd needs the old
    tensor (LAC's soft-mix training back-propagates through cached K/V), then a new tensor."""
    if torch.is_grad_enabled() and (rows.requires_grad or store.requires_grad):
        return store.index_copy(2, slots, rows)
    return store.index_copy_(2, slots, rows)


ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    is_causal: bool) -> torch.Tensor:
    """HF's ``eager_attention_forward``: scores in the model dtype, softmax in fp32, then back (what the papers'
    ``output_attentions=True`` runs timed). Masked keys get the dtype's minimum, as HF's causal mask does."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if is_causal:
        n, n_keys = q.shape[2], k.shape[2]
        mask = torch.ones(n, n_keys, dtype=torch.bool, device=q.device).tril(diagonal=n_keys - n)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(-1, dtype=torch.float32).to(q.dtype) @ v


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with HF's parameter names (``q_proj`` … ``o_proj``) and RoPE.

    ``implementation``: ``sdpa`` (the harness default) or ``eager`` (the papers' timing convention).
    """

    implementation = "sdpa"

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        d, kv = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def qkv(self, h: torch.Tensor, cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normed rows [B, n, D] → q [B, H, n, hd], k and v [B, KV, n, hd]; q and k rotated at ``cos_sin``."""
        B, n, _ = h.shape
        q = self.q_proj(h).view(B, n, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return rope(q, cos_sin), rope(k, cos_sin), v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
               is_causal: bool = False) -> torch.Tensor:
        """Attention over the given keys, then the output projection: [B, H, n, hd] → [B, n, D]."""
        if self.implementation == "eager":
            out = eager_attention(q, k, v, mask, is_causal)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                 enable_gqa=self.n_kv_heads != self.n_heads)
        B, _, n, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(B, n, self.n_heads * self.head_dim))

    def probabilities(self, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention probabilities [H, n, n_keys] in fp32, computed beside SDPA (for methods' statistics)."""
        n = q.shape[2]
        groups = self.n_heads // self.n_kv_heads
        kk = keys.repeat_interleave(groups, dim=1) if groups > 1 else keys
        scores = (q.float() @ kk.float().transpose(-1, -2)) / math.sqrt(self.head_dim)
        if mask is None and n > 1:
            mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1)[0]


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward with HF's parameter names."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        d, m = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(d, m, bias=False)
        self.up_proj = nn.Linear(d, m, bias=False)
        self.down_proj = nn.Linear(m, d, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


def soft_mixed_kv(mix: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, layer: int,
                  slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LAC's differentiable relaxation: per row, m · fresh + (1 − m) · the cached K/V of the previous step."""
    m = mix[slots].to(k.dtype)[None, None, :, None]
    return m * k + (1 - m) * cache.k[layer][:, :, slots].detach(), m * v + (1 - m) * cache.v[layer][:, :, slots].detach()


def key_mask(cache: KVCache, layer: int, pos: torch.Tensor, causal: bool) -> torch.Tensor:
    """[n, capacity]: a query sees every live slot of the layer (and, when causal, none at a later position)."""
    mask = cache.live[layer][None, :].expand(pos.shape[0], -1)
    return mask & (cache.pos[layer][None, :] <= pos[:, None]) if causal else mask


def count_layer_macs(meter: MacMeter, cfg: LlamaConfig, n: int, n_keys: int, region: str, with_probs: bool) -> None:
    """MACs of one layer for ``n`` query rows over ``n_keys`` keys (q/o, k/v, QK^T + AV, SwiGLU)."""
    d, m, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * cfg.head_dim
    meter.add(region, 2 * n * d * d + 2 * n * d * kv + 2 * n * n_keys * d + 3 * n * d * m)
    if with_probs:
        meter.add("method_attn_stats", n * n_keys * d)
    if region == "prefill":
        meter.add_paper_layer(n, d, m)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.mlp = LlamaMLP(cfg)

    def causal_forward(self, x: torch.Tensor, cos_sin: torch.Tensor) -> torch.Tensor:
        """A plain causal pass over a batch [B, L, D] without a cache (the behaviour-cloning forward)."""
        q, k, v = self.self_attn.qkv(self.input_layernorm(x), cos_sin)
        x = x + self.self_attn.attend(q, k, v, is_causal=True)
        return x + self.mlp(self.post_attention_layernorm(x))

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
        """Run the rows ``x`` (at ``slots``/``pos``) through the layer, writing their K/V to the cache.

        ``plain``: the rows are exactly the live slots in position order (a causal square prefill), so
        SDPA runs on the fresh K/V with ``is_causal``. Otherwise the queries attend to every live slot
        of the cache, masked by position order when ``causal``. Attention probabilities (``want_probs``)
        have one column per cache slot. Nothing here reads tensor values back to Python (no GPU sync;
        works on the meta device), so ``n_keys`` is passed in for the MAC count.
        """
        attn, n = self.self_attn, x.shape[1]
        q, k, v = attn.qkv(self.input_layernorm(x), cache.rope[:, pos])
        if soft_mix is not None:
            k, v = soft_mixed_kv(soft_mix, k, v, cache, layer, slots)
        cache.write(layer, slots, k, v, pos)
        if plain and causal:
            keys, mask = k, None
            x = x + attn.attend(q, k, v, is_causal=bool(n > 1))
        else:
            keys, mask = cache.k[layer], key_mask(cache, layer, pos, causal)
            x = x + attn.attend(q, keys, cache.v[layer], mask)
        probs = attn.probabilities(q, keys, mask) if want_probs else None
        x = x + self.mlp(self.post_attention_layernorm(x))
        if meter is not None:
            count_layer_macs(meter, self.cfg, n, n_keys, region, want_probs)
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
        self.compiled_decode_step: Callable[..., torch.Tensor] | None = None  # set by compile_decode()
        self.compiled_layer_step: Callable[..., tuple] | None = None  # set by compile_prefill()
        self.bucket_rows = 32  # edited prefills are padded to a multiple of this (few shapes, graphs reused)
        self.scratch_slots = 0  # 1 with the compiled prefill: the slot padding rows write their K/V to

    @property
    def attention(self) -> str:
        return self.model.layers[0].self_attn.implementation

    def set_attention(self, implementation: str) -> None:
        """``sdpa`` or ``eager`` in every layer (prefill and decode alike)."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}; got {implementation!r}")
        for block in self.model.layers:
            block.self_attn.implementation = implementation

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
            if self.compiled_layer_step is not None and soft_mix is None:
                x, probs = self.bucketed_layer(block, layer, state, cache, steering.causal, want)
                if meter is not None:  # the real rows only: padding is not computed work
                    count_layer_macs(meter, self.cfg, state.x.shape[1], state.n_live, "prefill", want)
            else:
                x, probs = block(layer, state.x, state.slots, state.pos, cache, plain=state.plain,
                                 n_keys=state.n_live, causal=steering.causal, soft_mix=soft_mix, want_probs=want,
                                 meter=meter)
            state = state.next_layer(x, probs if want else None)
        t0 = hooks()
        steering.at_layer(state)
        state.hook_seconds = hook_s + hooks() - t0  # host time in the method's layer hooks
        last = state.row_of(n_prefill - 1)
        return self.model.norm(state.x[:, last]), state

    def bucketed_layer(self, block: DecoderLayer, layer: int, state: PrefillState, cache: KVCache, causal: bool,
                       want_probs: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One prefill layer through the compiled ``layer_step``, rows padded up to a multiple of ``bucket_rows``.

        The plain prefill (the episode's fixed length) runs unpadded. Padding rows sit at position 0 and write
        their K/V to the scratch slot (never live), so real rows never see them; they see BOS, so they stay
        finite. Their outputs and probabilities are cut off again.
        """
        x, slots, pos = state.x, state.slots, state.pos
        n = x.shape[1]
        pad = 0 if state.plain else -n % self.bucket_rows
        if pad:
            x = torch.cat([x, x.new_zeros(1, pad, x.shape[2])], dim=1)
            slots = torch.cat([slots, slots.new_full((pad,), cache.capacity - 1)])
            pos = torch.cat([pos, pos.new_zeros(pad)])
        out, probs = self.compiled_layer_step(block, x, slots, pos, cache.k[layer], cache.v[layer], cache.pos[layer],
                                              cache.live[layer], cache.rope, state.plain, causal, want_probs)
        return out[:, :n], (probs[:, :n] if probs is not None else None)

    @staticmethod
    def layer_step(block: DecoderLayer, x: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor,
                   k_cache: torch.Tensor, v_cache: torch.Tensor, pos_cache: torch.Tensor, live: torch.Tensor,
                   rope_cos_sin: torch.Tensor, plain: bool, causal: bool,
                   want_probs: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tensor part of one prefill layer (``DecoderLayer.forward`` without books): K/V and positions written
        in place at ``slots``; no host reads, so it compiles to one graph per (row count, flags), shared by all
        layers (the block's weights are graph inputs)."""
        attn = block.self_attn
        q, k, v = attn.qkv(block.input_layernorm(x), rope_cos_sin[:, pos])
        k_cache.index_copy_(2, slots, k)
        v_cache.index_copy_(2, slots, v)
        pos_cache.index_copy_(0, slots, pos)
        if plain and causal:
            keys, mask = k, None
            x = x + attn.attend(q, k, v, is_causal=True)
        else:
            keys, mask = k_cache, live[None, :].expand(pos.shape[0], -1)
            if causal:
                mask = mask & (pos_cache[None, :] <= pos[:, None])
            x = x + attn.attend(q, keys, v_cache, mask)
        probs = attn.probabilities(q, keys, mask) if want_probs else None
        return x + block.mlp(block.post_attention_layernorm(x)), probs

    def compile_prefill(self) -> None:
        """Run each prefill layer through a compiled ``layer_step`` (fused kernels), edited row counts padded to
        buckets of ``bucket_rows``; LAC's soft-mix training keeps the eager layers.

        No CUDA graphs here (unlike the decode step): one graph serves all layers with each layer's weights as
        inputs, and each layer's output feeds the next call, which CUDA-graph trees would answer by recording a
        graph per layer and shape. At batch 1 the prefill is compute-bound on a GPU; fusing is what pays.
        """
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        self.scratch_slots = 1
        self.compiled_layer_step = torch.compile(self.layer_step, dynamic=False, fullgraph=True)

    def decode(self, token: torch.Tensor, slot: int, pos: int | list[int], cache: KVCache,
               meter: MacMeter | None) -> torch.Tensor:
        """One greedy decode step for ``token`` ([1] long) at ``slot``; returns its final hidden.

        ``pos`` is its RoPE position, or one per layer (SparseVLM numbers positions by each layer's length).
        The host keeps the books (key counts, MACs) in Python ints; the tensor work is ``decode_step``, whose
        shapes are fixed for an episode, so it can be compiled once (``compiled``).
        """
        per_layer = pos if isinstance(pos, list) else [pos] * len(self.model.layers)
        dev = token.device
        slots, positions = torch.tensor([slot], device=dev), torch.tensor(per_layer, device=dev)
        cache.live[:, slot] = True
        cache.pos[:, slot] = positions
        for layer in range(len(self.model.layers)):
            cache.n_live[layer] += 1
            if meter is not None:
                count_layer_macs(meter, self.cfg, 1, cache.n_live[layer], "decode", False)
        step = self.compiled_decode_step or self.decode_step
        return step(token, slots, positions, cache.k, cache.v, cache.live, cache.rope)

    def decode_step(self, token: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor,
                    k_cache: list[torch.Tensor], v_cache: list[torch.Tensor], live: torch.Tensor,
                    rope_cos_sin: torch.Tensor) -> torch.Tensor:
        """The tensor part of a decode step: every layer for one token, its K/V written at ``slots``.

        No host synchronisation and no Python-side state: the same shapes at every call of an episode.
        """
        x = self.model.embed_tokens(token)[None]
        cos_sin = rope_cos_sin[:, positions]  # [2, n_layers, hd]: one gather for all layers
        for layer, block in enumerate(self.model.layers):
            attn = block.self_attn
            q, k, v = attn.qkv(block.input_layernorm(x), cos_sin[:, layer : layer + 1])
            k_cache[layer] = write_slots(k_cache[layer], slots, k)
            v_cache[layer] = write_slots(v_cache[layer], slots, v)
            x = x + attn.attend(q, k_cache[layer], v_cache[layer], live[layer][None, :])
            x = x + block.mlp(block.post_attention_layernorm(x))
        return self.model.norm(x[:, 0])

    def compile_decode(self) -> None:
        """Run ``decode_step`` through ``torch.compile`` (fixed shapes; CUDA graphs on a GPU).

        The first call of each cache shape compiles (tens of seconds on CPU); later calls launch the fused
        kernels. Results equal the eager step within float tolerance, not bit for bit (fused reductions).
        """
        mode = "reduce-overhead" if self.lm_head.weight.is_cuda else None
        self.compiled_decode_step = torch.compile(self.decode_step, dynamic=False, fullgraph=True, mode=mode)

    def logits(self, hidden: torch.Tensor, meter: MacMeter | None) -> torch.Tensor:
        if meter is not None:
            meter.linear("lm_head", hidden.shape[0], self.cfg.hidden_size, self.cfg.vocab_size)
        return self.lm_head(hidden)
