"""The fast paths: the functional decode step is the layer code's decode, its compiled form equals it within float
tolerance (greedy tokens identical); the compiled, row-bucketed prefill layers equal the eager layers for plain,
pruned and reused rows (padding rows change no live slot and count no MACs); a policy's cache is reused across
episodes without changing results."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bench.core.flops import MacMeter
from bench.core.models.config import LlamaConfig
from bench.core.models.llama import KVCache, LlamaExecutor
from bench.core.models.steering import PrefillState, Steering
from bench.harness.openvla_policy import load_openvla_policy
from methods.baseline import Baseline
from tests.conftest import FIXTURES

CFG = LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=320, rms_norm_eps=1e-6, rope_theta=10000.0)
N_PROMPT, N_DECODE = 21, 6


def prefilled(device: str = "cpu") -> tuple[LlamaExecutor, KVCache, torch.Tensor]:
    """A random executor with a 21-token prompt prefilled; returns the prefill's last hidden state too."""
    torch.manual_seed(0)
    lm = LlamaExecutor(CFG).eval().to(device)
    cache = lm.new_cache(N_PROMPT + N_DECODE + 1)
    ids = torch.randint(0, CFG.vocab_size, (1, N_PROMPT), device=device)
    with torch.inference_mode():
        hidden, _ = lm.prefill(lm.model.embed_tokens(ids), cache)
    return lm, cache, hidden


def greedy_decode(lm: LlamaExecutor, cache: KVCache, hidden: torch.Tensor, per_layer: bool) -> tuple[list, list]:
    """Six greedy decode steps; ``per_layer`` gives each layer its own position (as SparseVLM does)."""
    tokens, logits = [], []
    with torch.inference_mode():
        for i in range(N_DECODE):
            logits.append(lm.logits(hidden, None))
            tokens.append(int(logits[-1].argmax(-1)))
            pos = [N_PROMPT + i - layer for layer in range(CFG.num_hidden_layers)] if per_layer else N_PROMPT + i
            hidden = lm.decode(logits[-1].argmax(-1), N_PROMPT + i, pos, cache, None)
    return tokens, logits


def layer_path_decode(lm: LlamaExecutor, cache: KVCache, token: torch.Tensor, slot: int, pos: int) -> torch.Tensor:
    """What ``decode`` did before the functional step: each DecoderLayer with a key mask of the live slots."""
    x = lm.model.embed_tokens(token)[None]
    s, p = torch.tensor([slot]), torch.tensor([pos])
    cache.live[:, slot] = True
    for layer, block in enumerate(lm.model.layers):
        cache.n_live[layer] += 1
        x, _ = block(layer, x, s, p, cache, plain=False, n_keys=cache.n_live[layer], causal=False)
    return lm.model.norm(x[:, 0])


def test_functional_decode_step_is_bit_identical_to_the_layer_path():
    lm, cache, hidden = prefilled()
    other = copy.deepcopy(cache)
    with torch.inference_mode():
        token = lm.logits(hidden, None).argmax(-1)
        got = lm.decode(token, N_PROMPT, N_PROMPT, cache, None)
        ref = layer_path_decode(lm, other, token, N_PROMPT, N_PROMPT)
    assert torch.equal(got, ref)
    for layer in range(CFG.num_hidden_layers):
        assert torch.equal(cache.k[layer], other.k[layer]) and torch.equal(cache.v[layer], other.v[layer])
    assert torch.equal(cache.pos, other.pos) and torch.equal(cache.live, other.live) and cache.n_live == other.n_live


@pytest.mark.parametrize("per_layer", [False, True], ids=["one-position", "per-layer-positions"])
def test_compiled_decode_equals_eager(per_layer):
    lm, cache, hidden = prefilled()
    eager_cache = copy.deepcopy(cache)
    ref_tokens, ref_logits = greedy_decode(lm, eager_cache, hidden, per_layer)
    lm.compile_decode()
    tokens, logits = greedy_decode(lm, cache, hidden, per_layer)
    assert tokens == ref_tokens
    for got, ref in zip(logits, ref_logits, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    for layer in range(CFG.num_hidden_layers):
        torch.testing.assert_close(cache.k[layer], eager_cache.k[layer], atol=1e-5, rtol=1e-5)
    assert cache.n_live == eager_cache.n_live and torch.equal(cache.live, eager_cache.live)


def restore(cache: KVCache, snapshot: KVCache) -> None:
    """Put ``snapshot``'s contents into ``cache`` in place (its tensors keep their addresses)."""
    for dst, src in zip((*cache.k, *cache.v, cache.pos, cache.live), (*snapshot.k, *snapshot.v, snapshot.pos,
                                                                       snapshot.live), strict=True):
        dst.copy_(src)
    cache.n_live, cache.n_prefill, cache.steps = list(snapshot.n_live), snapshot.n_prefill, snapshot.steps


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_decode_equals_eager_on_cuda():
    """Compiled with CUDA graphs (mode reduce-overhead) over the static cache: the same tokens as eager, also when
    the recorded graphs are replayed (second pass)."""
    lm, cache, hidden = prefilled("cuda")
    snapshot = copy.deepcopy(cache)
    ref_tokens, ref_logits = greedy_decode(lm, copy.deepcopy(cache), hidden, per_layer=False)
    lm.compile_decode()
    for _ in range(3):
        restore(cache, snapshot)
        tokens, logits = greedy_decode(lm, cache, hidden, per_layer=False)
        assert tokens == ref_tokens
        for got, ref in zip(logits, ref_logits, strict=True):
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_policy_reuses_its_cache_across_episodes_with_the_same_results():
    frames = np.load(FIXTURES / "libero_frames.npz")["frames"][:3]
    instruction = "pick up the alphabet soup and place it in the basket"

    def episode(policy):
        policy.reset(instruction, 0)
        return [policy.act({"agentview_image": f}).tokens for f in frames]

    fresh = load_openvla_policy("tiny-openvla", None, Baseline(), "libero_object")
    first = episode(fresh)
    cache = fresh.cache
    assert episode(fresh) == first and fresh.cache is cache  # cleared in place, same tensors
    fresh.reset("pick up the ketchup and place it in the basket and then some", 0)  # another prompt length
    assert fresh.cache is not cache


class EditRows(Steering):
    """Before layer 1: drop slots 3, 5, 7 (a pruning method) or, on a second step, reuse slots 2..9 (a caching
    method); attention probabilities of layer 1 requested (a method's statistics)."""

    attention_layers = frozenset({1})

    def __init__(self, edit: str) -> None:
        self.edit = edit

    def at_layer(self, state: PrefillState) -> None:
        if state.layer == 1 and self.edit == "drop":
            state.drop(torch.tensor([3, 5, 7]))
        if state.layer == 1 and self.edit == "reuse" and state.can_reuse:
            state.reuse(torch.arange(2, 10))
        if state.layer == 2:
            self.probs = state.attn


def two_prefills(lm: LlamaExecutor, edit: str) -> tuple[list[torch.Tensor], KVCache, EditRows, MacMeter]:
    """Two control steps' prefills of one 21-token prompt (slightly different inputs), as an episode runs them."""
    torch.manual_seed(1)
    embeds = torch.randn(2, 1, N_PROMPT, CFG.hidden_size).to(lm.lm_head.weight.device)
    cache, steering, meter = lm.new_cache(N_PROMPT + N_DECODE + 1 + lm.scratch_slots), EditRows(edit), MacMeter()
    hidden = []
    with torch.inference_mode():
        for step in range(2):
            hidden.append(lm.prefill(embeds[step], cache, steering, meter)[0])
            cache.steps += 1
    return hidden, cache, steering, meter


@pytest.mark.parametrize("edit", ["none", "drop", "reuse"])
def test_compiled_bucketed_prefill_equals_eager(edit, device="cpu"):
    torch.manual_seed(0)
    lm = LlamaExecutor(CFG).eval().to(device)
    ref_hidden, ref_cache, ref_steering, ref_meter = two_prefills(lm, edit)
    lm.compile_prefill()
    hidden, cache, steering, meter = two_prefills(lm, edit)
    for got, ref in zip(hidden, ref_hidden, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    n = ref_cache.capacity
    assert cache.capacity == n + 1 and not cache.live[:, n:].any()  # the scratch slot is never live
    assert torch.equal(cache.live[:, :n], ref_cache.live)
    for layer in range(CFG.num_hidden_layers):
        live = ref_cache.live[layer]
        torch.testing.assert_close(cache.k[layer][:, :, :n][:, :, live], ref_cache.k[layer][:, :, live],
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steering.probs[..., :n], ref_steering.probs, atol=1e-5, rtol=1e-5)
    assert meter.report() == ref_meter.report()  # padding rows are not counted as computed


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("edit", ["drop", "reuse"])
def test_compiled_bucketed_prefill_equals_eager_on_cuda(edit):
    test_compiled_bucketed_prefill_equals_eager(edit, "cuda")


@pytest.mark.parametrize("method", ["baseline", "fastv", "sparsevlm", "vla-cache", "lac"])
def test_every_method_keeps_its_tokens_with_the_compiled_prefill(method):
    """The bucketed compiled prefill under each method's plans (pruned, merged, reused rows; statistics) gives the
    eager path's greedy tokens over a recorded trace. (The decode step's compiled form is checked above; both
    together on all 13 methods: `bench fidelity --compile`.)"""
    from bench.cli.profile import build_policy
    from bench.harness.trace import load_trace
    from tests.conftest import ROOT

    frames, instruction, suite = load_trace(ROOT / "results" / "reference" / "fidelity" / "trace.npz")
    tokens = []
    for compiled in (False, True):
        policy = build_policy("tiny-openvla", method, None, False, suite, "cpu", "fp32")
        if compiled:
            policy.model.language_model.compile_prefill()
        policy.reset(instruction, 0)
        tokens.append([policy.act({"agentview_image": f}).tokens for f in frames[:8]])
    assert tokens[1] == tokens[0]
