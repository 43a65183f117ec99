"""The executor against transformers' LlamaForCausalLM, and the compute-plan invariants."""

import pytest
import torch

from bench.core.models.config import LlamaConfig
from bench.core.models.llama import LlamaExecutor
from bench.core.models.steering import PrefillState, Steering

CFG = LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=4, vocab_size=320, rms_norm_eps=1e-6, rope_theta=10000.0)


def hf_model(cfg: LlamaConfig):
    import transformers  # the test extra installs it: a missing oracle must fail, not skip

    hf_cfg = transformers.LlamaConfig(
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
        vocab_size=cfg.vocab_size, rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta,
        max_position_embeddings=512, attn_implementation="eager", tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(hf_cfg).eval()


def ours_from(hf) -> LlamaExecutor:
    model = LlamaExecutor(CFG).eval()
    model.load_state_dict(hf.state_dict(), strict=True)
    return model


def seeded_model_and_ids(n: int) -> tuple[LlamaExecutor, torch.Tensor]:
    """A random executor (seed 0) and n random prompt ids."""
    torch.manual_seed(0)
    return LlamaExecutor(CFG).eval(), torch.randint(0, CFG.vocab_size, (1, n))


def prefill_logits(model: LlamaExecutor, ids: torch.Tensor, steering: Steering | None = None, cache=None):
    cache = cache or model.new_cache(ids.shape[1] + 8)
    hidden, _ = model.prefill(model.model.embed_tokens(ids), cache, steering)
    return model.logits(hidden, None), cache


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_prefill_and_greedy_decode_match_transformers(kv_heads):
    global CFG
    saved, CFG = CFG, LlamaConfig(**{**CFG.__dict__, "num_key_value_heads": kv_heads})
    try:
        hf = hf_model(CFG)
        ours = ours_from(hf)
        ids = torch.randint(0, CFG.vocab_size, (1, 37), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = hf(ids).logits[0, -1]
            got, cache = prefill_logits(ours, ids)
            assert (got[0] - ref).abs().max() < 1e-4
            ref_tokens = hf.generate(ids, max_new_tokens=5, do_sample=False)[0, ids.shape[1]:].tolist()
            tokens, logits = [], got
            for i in range(5):
                t = logits.argmax(-1)
                tokens.append(int(t))
                logits = ours.logits(ours.decode(t, ids.shape[1] + i, ids.shape[1] + i, cache, None), None)
        assert tokens == ref_tokens
    finally:
        CFG = saved


class ReuseSlots(Steering):
    """Reuse the given slots from layer 0 on (VLA-Cache's mechanism with a fixed set)."""

    def __init__(self, slots: torch.Tensor) -> None:
        self.slots = slots

    def at_layer(self, state: PrefillState) -> None:
        if state.layer == 0 and state.can_reuse:
            state.reuse(self.slots)


class AskAttention(Steering):
    attention_layers = frozenset({0, 2})

    def __init__(self) -> None:
        self.seen = {}

    def at_layer(self, state: PrefillState) -> None:
        if state.attn is not None:
            self.seen[state.layer - 1] = state.attn


def test_empty_plan_and_statistics_requests_are_bit_identical_to_baseline():
    model, ids = seeded_model_and_ids(40)
    with torch.no_grad():
        base, _ = prefill_logits(model, ids)
        empty, _ = prefill_logits(model, ids, Steering())
        ask = AskAttention()
        stats, _ = prefill_logits(model, ids, ask)
    assert torch.equal(base, empty) and torch.equal(base, stats)
    assert set(ask.seen) == {0, 2}
    probs = ask.seen[0]
    assert probs.shape == (CFG.num_attention_heads, 40, 40)
    assert torch.allclose(probs.sum(-1), torch.ones(CFG.num_attention_heads, 40))
    assert probs[:, 3, 4:].abs().max() == 0  # causal


def test_reusing_every_visual_token_on_an_identical_input_matches_recompute():
    model, ids = seeded_model_and_ids(40)
    visual = torch.arange(1, 30)
    with torch.no_grad():
        full1, cache = prefill_logits(model, ids, ReuseSlots(visual))  # first step: nothing to reuse yet
        cache.steps += 1
        reused, _ = prefill_logits(model, ids, ReuseSlots(visual), cache)
        full2, _ = prefill_logits(model, ids)
    assert torch.equal(full1, full2)
    assert (reused - full2).abs().max() < 1e-5
    assert reused.argmax() == full2.argmax()


def test_reuse_without_a_previous_step_is_refused():
    model = LlamaExecutor(CFG).eval()
    state_cache = model.new_cache(20)
    state_cache.steps = 0

    class Eager(Steering):
        def at_layer(self, state):
            if state.layer == 1:
                state.reuse(torch.arange(1, 5))

    with pytest.raises(RuntimeError, match="previous control step"), torch.no_grad():
        model.prefill(model.model.embed_tokens(torch.randint(0, 300, (1, 12))), state_cache, Eager())


def test_dropped_tokens_are_neither_queries_nor_keys():
    model, ids = seeded_model_and_ids(30)
    drop = torch.tensor([3, 4, 5])

    class Drop(Steering):
        def at_layer(self, state):
            if state.layer == 0:
                state.drop(drop)

    keep = torch.tensor([i for i in range(30) if i not in (3, 4, 5)])
    with torch.no_grad():
        dropped, _ = prefill_logits(model, ids, Drop())
        # the same sequence without those tokens, keeping original positions (as FastV does)
        cache = model.new_cache(38)

        class KeepPositions(Steering):
            def at_layer(self, state):
                if state.layer == 0:
                    state.pos = keep.clone()
                    state.plain = False

        shorter, _ = model.prefill(model.model.embed_tokens(ids[:, keep]), cache, KeepPositions())
        shorter = model.logits(shorter, None)
    assert (dropped - shorter).abs().max() < 1e-5


def test_soft_mix_of_one_is_the_full_forward():
    model, ids = seeded_model_and_ids(24)
    with torch.no_grad():
        full, cache = prefill_logits(model, ids)
        cache.steps += 1
        hidden, _ = model.prefill(model.model.embed_tokens(ids), cache, None, None, soft_mix=torch.ones(cache.capacity))
    assert (model.logits(hidden, None) - full).abs().max() < 1e-6
