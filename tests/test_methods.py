"""FastV, SparseVLM, VLA-Cache: invariants against the baseline and golden selections derived by hand."""

import numpy as np
import pytest
import torch

from bench.core.models.steering import PrefillState, Steering
from bench.harness.openvla_policy import load_openvla_policy
from bench.harness.registry import build_method
from methods.common import text_to_vision
from methods.fastv import FastV, FastVConfig, fastv_keep
from methods.sparsevlm import SparseVLM, SparseVLMConfig, dpc_knn, select_raters
from methods.vla_cache import VLACache, VLACacheConfig, reuse_schedule, static_patches
from tests.conftest import pixels

# ---------- invariants on the shipped tiny model (32 layers, 256 visual tokens) ----------


def run(steering: Steering, images: list[np.ndarray]):
    policy = load_openvla_policy("tiny-openvla", None, steering, "libero_object")
    policy.reset("put the black bowl on the plate", 0)
    model, hidden, tokens = policy.model, [], []
    for i, img in enumerate(images):
        steering.begin_step(img, i)
        prediction = model.predict_action(pixels(model, img), policy.input_ids, policy.cache, steering)
        tokens.append(prediction.tokens)
        hidden.append(prediction.hidden)
    return hidden, tokens


@pytest.fixture(scope="module")
def images(frames):
    from bench.core.models.processor import model_image
    from envs.libero import upright

    a, b = (model_image(upright(f)) for f in frames)
    return [a, b, b, a]


@pytest.fixture(scope="module")
def baseline(images):
    return run(Steering(), images)


@pytest.mark.parametrize(
    "steering",
    [
        FastV(FastVConfig(ratio=0.0)),
        SparseVLM(SparseVLMConfig(budget_scale=10.0)),
        VLACache(VLACacheConfig(sim_threshold=1.1)),
    ],
    ids=["fastv-R0", "sparsevlm-full-budget", "vla-cache-no-static"],
)
def test_no_op_settings_equal_baseline_bit_for_bit(steering, images, baseline):
    hidden, tokens = run(steering, images)
    assert tokens == baseline[1]
    for h, b in zip(hidden, baseline[0], strict=True):
        assert torch.equal(h, b)


def test_vla_cache_reusing_everything_on_a_repeated_frame_matches_recompute(images, baseline):
    steering = VLACache(VLACacheConfig(static_top_k=256, task_top_k=0, fixed_reuse=1.0))
    same = [images[1], images[1]]
    hidden, tokens = run(steering, same)
    assert steering.removed > 200  # almost every visual token reused from layer 2 on
    ref_hidden, ref_tokens = run(Steering(), same)
    assert tokens == ref_tokens
    assert (hidden[1] - ref_hidden[1]).abs().max() < 1e-4


@pytest.mark.parametrize(("name", "kept_from_2"), [("fastv", 128), ("fastv-k3", 256)])
def test_fastv_keeps_128_visual_tokens_from_layer_k(name, kept_from_2, images):
    steering, _ = build_method(name, {})
    policy = load_openvla_policy("tiny-openvla", None, steering, "libero_object")
    policy.reset("put the black bowl on the plate", 0)
    rec = policy.act({"agentview_image": np.ascontiguousarray(np.zeros((256, 256, 3), np.uint8) + 90)}).record
    per_layer = rec["visual_computed_per_layer"]
    assert per_layer[:2] == [256, 256] and per_layer[2] == kept_from_2 and set(per_layer[3:]) == {128}
    assert rec["visual_dropped_per_layer"][-1] == 128


# ---------- golden selections, derived by hand from the reference rules ----------


def attn_one_head(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows)[None]


def test_fastv_ranks_by_last_token_not_by_mean():
    # slots: 0 BOS, 1..4 visual, 5..6 text. Last query (row 6) favours slots 1,2; all rows together favour 3,4.
    a = torch.zeros(7, 7)
    a[:6, 3] = a[:6, 4] = 0.4
    a[6, 1], a[6, 2] = 0.5, 0.3
    keep_last = fastv_keep(a[None], last_row=6, n_visual=4, n_keep=2, score="last")
    keep_mean = fastv_keep(a[None], last_row=6, n_visual=4, n_keep=2, score="mean")
    assert sorted(keep_last.tolist()) == [1, 2] and sorted(keep_mean.tolist()) == [3, 4]


def test_fastv_drops_from_layer_k_keeping_positions():
    cfg = FastVConfig(k=1, ratio=0.5, n_visual=4)
    method = FastV(cfg)
    a = torch.zeros(1, 7, 7)
    a[0, 6, 1:5] = torch.tensor([0.1, 0.4, 0.05, 0.3])
    slots = torch.arange(7)
    state = PrefillState(1, torch.zeros(1, 7, 2), slots, slots.clone(), torch.ones(9, dtype=torch.bool), 7, 9,
                         attn=a, attn_query_slots=slots)
    method.at_layer(state)
    assert state.slots.tolist() == [0, 2, 4, 5, 6] and state.pos.tolist() == [0, 2, 4, 5, 6]
    assert not state.live[1] and not state.live[3] and state.n_live == 7


def test_sparsevlm_raters_are_text_tokens_above_mean_score():
    # visual rows [1,0],[1,0]; text rows [5,0],[0,0],[0,0]: r ≈ [0.987, 0.007, 0.007] > mean only for text 0
    emb = torch.tensor([[0.0, 0], [1, 0], [1, 0], [5, 0], [0, 0], [0, 0]])
    assert select_raters(emb, n_visual=2).tolist() == [0]


def test_sparsevlm_budgets_scaled_from_576():
    assert SparseVLMConfig().budgets == {2: 133, 6: 89, 15: 49}
    assert SparseVLMConfig(retain=64).budgets == {2: 29, 6: 13, 15: 8}


def test_sparsevlm_prune_keeps_top_relevance_recycles_and_renumbers():
    cfg = SparseVLMConfig(n_visual=6)
    method = SparseVLM(cfg)
    method.generator.manual_seed(0)
    L = 9  # 0 BOS, 1..6 visual, 7..8 text; text slot 8 is the only rater
    method.raters, method.next_slot, method.kept_after, method.n_visual_rows = torch.tensor([8]), L, {}, 6
    a = torch.zeros(1, L, L)
    a[0, 8, 1:7] = torch.tensor([0.05, 0.30, 0.01, 0.20, 0.25, 0.02])
    slots = torch.arange(L)
    x = torch.arange(L, dtype=torch.float32)[None, :, None].repeat(1, 1, 2)
    state = PrefillState(3, x, slots, slots.clone(), torch.zeros(L + 8, dtype=torch.bool), L, L,
                         attn=a, attn_query_slots=slots)
    state.live[:L] = True
    method.prune(state, budget=3)
    # kept: slots 2, 4, 5 (in sequence order); pruned 1, 3, 6 → int(3·0.3)+1 = 1 recycled → 1 cluster
    assert state.slots.tolist() == [0, 2, 4, 5, L, 7, 8]
    assert state.pos.tolist() == list(range(7))
    assert state.x[0, 4].tolist() == [1.0, 1.0]  # the most relevant pruned token (slot 1, relevance 0.05)
    assert state.n_live == 7 and state.live[L] and not state.live[1]


def test_dpc_knn_separates_two_groups():
    pts = torch.tensor([[0.0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10], [10, 10.1]])
    assign = dpc_knn(pts, n_clusters=2, k=2, generator=torch.Generator().manual_seed(0))
    assert len(set(assign[:3].tolist())) == 1 and len(set(assign[3:].tolist())) == 1
    assert assign[0] != assign[3]


def test_vla_cache_static_threshold_0996_is_inclusive_boundary():
    # a patch of 588 values all 100 vs the same with k values zeroed: cos = sqrt((588−k)/588)
    # k = 4 → 0.99659 (static), k = 5 → 0.99574 (not static)
    prev = np.full((28, 28, 3), 100, np.uint8)  # a 2×2 grid of 14×14 patches
    cur = prev.copy()
    cur[0, 0:4, 0] = 0  # patch 0: k=4
    cur[0, 14:19, 0] = 0  # patch 1: k=5
    cur[14:28, 0:14] = 200  # patch 2: brighter, same direction → cos = 1
    got = static_patches(cur, prev, threshold=0.996, top_k=130)
    assert set(got.tolist()) == {0, 2, 3} and got[-1] == 0  # most similar first; patch 0 is the least similar
    assert static_patches(cur, prev, threshold=0.996, top_k=2).tolist() in ([2, 3], [3, 2])


def test_vla_cache_entropy_schedule_with_damping():
    # E = [1, 3, 2, 0] → 1 − minmax = [2/3, 0, 1/3, 1]; increases damped by 0.55:
    # l2: 0 + 0.55·(1/3) = 0.18333; l3: 0.18333 + 0.55·(1 − 0.18333) = 0.63250
    assert np.allclose(reuse_schedule([1, 3, 2, 0], 0.55), [2 / 3, 0, 0.183333, 0.632500], atol=1e-5)


def test_vla_cache_text_rows_are_257_to_291():
    n_vis, L = 4, 300
    a = torch.zeros(1, L, L)
    a[0, 5, 1] = 1.0  # rows outside [1+n_vis, 1+n_vis+35) must be ignored
    a[0, 5 + 35, 2] = 1.0
    a[0, 6, 3] = 1.0
    s = text_to_vision(a, torch.arange(L), n_visual=n_vis, text_rows=35, n_prefill=L)
    assert s.tolist() == pytest.approx([1 / 35, 0, 1 / 35, 0])


@pytest.mark.parametrize(("order", "expected"), [("position", [5, 9]), ("importance", [40, 200])])
def test_vla_cache_reuses_a_prefix_of_the_position_sorted_list(order, expected):
    rng = np.random.default_rng(0)
    prev = rng.integers(50, 200, (224, 224, 3)).astype(np.uint8)
    cur = 255 - prev  # every patch changes direction …
    static = (4, 8, 39, 199, 101)
    for p in static:  # … except these (patch p sits at slot p + 1)
        r, c = divmod(p, 16)
        cur[r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14] = prev[r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14]
    relevance = torch.zeros(256)
    relevance[list(static)] = torch.tensor([0.9, 0.8, 0.1, 0.2, 1.0])  # patch 101 is evicted (task top-1)
    method = VLACache(VLACacheConfig(order=order, fixed_reuse=0.5, task_top_k=1))
    method.prev_frame, method.prev_relevance, method.prev_entropy = prev, relevance, [0.0] * 32
    method.begin_step(cur, 1)
    assert method.n_static == 5
    assert method.reusable == ([5, 9, 40, 200] if order == "position" else [40, 200, 9, 5])
    slots = torch.arange(300)
    state = PrefillState(2, torch.zeros(1, 300, 2), slots, slots.clone(), torch.ones(310, dtype=torch.bool), 300,
                         300, can_reuse=True)
    method.at_layer(state)  # layer 2: int(0.5 · 4) = 2 tokens
    assert sorted(set(range(300)) - set(state.slots.tolist())) == expected
