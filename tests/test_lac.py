"""LAC: straight-through estimators, soft mask, recovery rate, and the method in the compute plan."""

import itertools

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench.core.models.steering import PrefillState
from methods.lac import torch_flow
from methods.lac.flow import farneback, lac_input
from methods.lac.method import LAC, LACConfig, recovered_tokens
from methods.lac.nets import CANDIDATE_RATIOS, LACNet, gumbel_ratio, soft_cache_mask


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lac") / "net.safetensors"
    save_file(LACNet().state_dict(), str(path))
    return str(path)


def test_gumbel_straight_through_is_one_hot_with_gradients_to_the_predictor():
    torch.manual_seed(0)
    logits = torch.randn(4, len(CANDIDATE_RATIOS), requires_grad=True)
    p, ratio = gumbel_ratio(logits, torch.tensor(CANDIDATE_RATIOS), tau=1.0)
    assert torch.equal(p.detach().sum(-1), torch.ones(4)) and set(p.detach().unique().tolist()) == {0.0, 1.0}
    assert all(round(r, 6) in CANDIDATE_RATIOS for r in ratio.tolist())
    (-ratio.sum()).backward()  # the L_ratio reward
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_soft_mask_forward_is_hard_top_k_and_gradients_reach_the_selector():
    torch.manual_seed(0)
    scores = torch.rand(2, 256, requires_grad=True)
    ratio = torch.tensor([0.4, 0.8], requires_grad=True)
    m = soft_cache_mask(scores, ratio, tau_s=0.05)
    for b, r in enumerate((0.4, 0.8)):
        k = round(r * 256)
        cached = scores[b].detach().argsort()[:k]
        expect = torch.ones(256)
        expect[cached] = 0
        assert torch.equal(m[b].detach(), expect)
    (m * torch.randn(2, 256)).sum().backward()
    assert scores.grad.abs().sum() > 0 and ratio.grad.abs().sum() > 0


def test_flow_sees_motion_and_input_has_five_channels():
    rng = np.random.default_rng(0)
    img = (rng.random((224, 224, 3)) * 255).astype(np.uint8)
    img = np.ascontiguousarray(np.kron(img[::8, ::8], np.ones((8, 8, 1), np.uint8)))  # smooth blocks
    shifted = np.roll(img, 3, axis=1)
    flow = farneback(img, shifted)
    assert np.median(flow[40:180, 40:180, 0]) == pytest.approx(3, abs=1.0)
    x = lac_input(shifted, img)
    assert x.shape == (1, 5, 224, 224) and x[0, 3:].abs().max() > 0
    assert lac_input(img, None)[0, 3:].abs().max() == 0  # first frame: no motion


@pytest.fixture(scope="module")
def policy_images():
    """Consecutive 224×224 policy inputs (the OpenVLA image chain) from the committed fidelity trace."""
    from bench.harness.openvla_policy import load_openvla_policy
    from bench.harness.trace import load_trace
    from envs.libero import upright
    from methods.baseline import Baseline
    from tests.conftest import ROOT

    frames, _, suite = load_trace(ROOT / "results" / "reference" / "fidelity" / "trace.npz")
    processor = load_openvla_policy("tiny-openvla", None, Baseline(), suite).processor
    return [processor.image(upright(f)) for f in frames[:12]]


def test_torch_farneback_reproduces_opencv_on_libero_frames(policy_images):
    """The torch port (GPU-capable) against OpenCV: grayscale bit-exact, flow within 1e-3 px mean end-point error
    (measured 1e-4; the rest is float summation order and a rare bilinear floor flip)."""
    import cv2

    a = policy_images[0]
    assert torch.equal(torch_flow.gray(torch.from_numpy(a)), torch.from_numpy(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)).float())
    errors, motion = [], []
    for prev, cur in itertools.pairwise(policy_images):
        ref = farneback(prev, cur)
        got = torch_flow.farneback(torch.from_numpy(prev), torch.from_numpy(cur)).numpy()
        errors.append(np.linalg.norm(got - ref, axis=-1).ravel())
        motion.append(np.linalg.norm(ref, axis=-1).mean())
    e = np.concatenate(errors)
    assert np.mean(motion) > 0.1  # the frames do move
    assert e.mean() < 1e-3 and np.percentile(e, 99) < 1e-2, (e.mean(), np.percentile(e, 99))


def test_lac_chooses_the_same_with_either_flow_backend(policy_images):
    """Same selector input up to 1e-4 px: the same ratio and cached tokens step by step."""
    chosen = {}
    for backend in ("opencv", "torch"):
        method = LAC(LACConfig(flow=backend))
        method.bind(32, 256, "cpu")
        assert method.flow == backend
        chosen[backend] = []
        for i, img in enumerate(policy_images[:6]):
            method.begin_step(img, i)
            chosen[backend].append((method.ratio, method.cached.tolist()))
    assert chosen["opencv"] == chosen["torch"]
    method = LAC(LACConfig())  # auto: OpenCV on the CPU (10× faster there), torch on CUDA
    method.bind(32, 256, "cpu")
    assert method.flow == "opencv"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_farneback_on_cuda_matches_the_cpu(policy_images):
    prev, cur = (torch.from_numpy(x) for x in policy_images[:2])
    cpu = torch_flow.farneback(prev, cur)
    gpu = torch_flow.farneback(prev.cuda(), cur.cuda()).cpu()
    assert (gpu - cpu).norm(dim=-1).mean() < 1e-3
    method = LAC(LACConfig())
    method.bind(32, 256, "cuda")
    assert method.flow == "torch" and next(method.net.parameters()).is_cuda


def test_recovery_rate_matches_p_with_a_fixed_seed():
    rng = np.random.default_rng(123)
    draws = [recovered_tokens(100, rng, p=0.3, fraction=0.5) for _ in range(20000)]
    assert abs(np.mean([len(d) > 0 for d in draws]) - 0.3) < 0.01
    assert {len(d) for d in draws} == {0, 50} and all(len(set(d)) == len(d) for d in draws)
    again = [recovered_tokens(100, np.random.default_rng(123), 0.3, 0.5) for _ in range(1)]
    assert np.array_equal(again[0], recovered_tokens(100, np.random.default_rng(123), 0.3, 0.5))


def test_method_recovers_at_its_rate_over_an_episode(weights):
    method = LAC(LACConfig(weights=weights, fixed_ratio=0.5, p_recover=0.25, recover_fraction=0.5))
    method.reset_episode(7)
    frame = np.zeros((224, 224, 3), np.uint8)
    counts = []
    for i in range(121):
        method.begin_step(frame, i)
        counts.append(method.recovered)
    assert set(counts[1:]) <= {0, 64} and 0.12 < np.mean([c > 0 for c in counts[1:]]) < 0.38


def test_lac_caches_the_lowest_scores_from_layer_0(weights):
    method = LAC(LACConfig(weights=weights, fixed_ratio=0.25, p_recover=0.0))
    method.reset_episode(0)
    rng = np.random.default_rng(1)
    f0 = (rng.random((224, 224, 3)) * 255).astype(np.uint8)
    method.begin_step(f0, 0)
    assert method.cached.numel() == 0  # first step of an episode: full compute
    method.begin_step(np.roll(f0, 2, axis=0), 1)
    assert method.cached.numel() == 64 and method.cached.min() >= 1 and method.cached.max() <= 256
    slots = torch.arange(290)
    state = PrefillState(0, torch.zeros(1, 290, 4), slots, slots.clone(), torch.ones(300, dtype=torch.bool), 290, 290,
                         can_reuse=True)
    method.at_layer(state)
    assert state.slots.numel() == 290 - 64 and not torch.isin(method.cached, state.slots).any()


def test_cnn_macs_match_fvcore():
    from fvcore.nn import FlopCountAnalysis

    net = LACNet().eval()
    analysis = FlopCountAnalysis(net, torch.zeros(1, 5, 224, 224))
    analysis.unsupported_ops_warnings(False)
    assert abs(net.macs() - analysis.total()) / analysis.total() < 0.01


def test_demo_mode_targets_are_the_demo_actions(tmp_path):
    """``bench train lac --data``: frames and targets come from a LIBERO-layout demo file, not from rollouts."""
    from bench.core.models.processor import action_tokens, env_to_model_gripper, normalize_actions
    from bench.harness.openvla_policy import TINY_CHECKPOINT, OpenVLAPolicy
    from envs.libero_hdf5 import load_demos
    from methods.lac.train import LACTrainConfig, train_lac
    from methods.lac.train_data import SaliencyProbe
    from tests.conftest import fake_demo_file

    fake_demo_file(tmp_path / "demos" / "t_demo.hdf5", n_demos=1, T=6)
    policy = OpenVLAPolicy("tiny-openvla", TINY_CHECKPOINT, SaliencyProbe(), "libero_object")
    cfg = LACTrainConfig(data=[str(tmp_path / "demos")], demos=1, steps_per_rollout=4, stage1_steps=2,
                         stage2_steps=1, batch=2)
    final = train_lac(policy, cfg, tmp_path / "run", log=lambda m: None)
    data = np.load(tmp_path / "run" / "demos.npz")
    assert data["frames"].shape == (1, 4, 224, 224, 3) and final.exists()
    assert (tmp_path / "run" / "lac_stage2.safetensors").exists()  # the paper's two stages, before the ratio fit
    assert np.load(tmp_path / "run" / "ratio_table.npy").shape == (3, len(CANDIDATE_RATIOS))  # 3 pairs × candidates
    assert data["saliency"].min() >= 0.0 and data["saliency"].max() <= 1.0
    actions = next(load_demos(tmp_path / "demos" / "t_demo.hdf5")).actions.astype(np.float64)
    actions[:, 6] = env_to_model_gripper(actions[:, 6])
    stats = policy.model.cfg.norm_stats["libero_object"]
    tokens = action_tokens(normalize_actions(actions, stats), policy.model.cfg.n_text_vocab)
    windows = [tokens[s: s + 4].tolist() for s in range(3)]
    assert data["tokens"][0].tolist() in windows


def test_ratio_fit_learns_each_pair_s_best_candidate_and_leaves_the_selector_alone():
    """Targets are each pair's optimum of CE_j − λ r_j: flat CE → the largest ratio, steep CE → the smallest."""
    from methods.lac.train import LACTrainConfig, fit_ratio

    torch.manual_seed(0)
    net = LACNet()
    still, moving = torch.rand(6, 5, 224, 224), torch.rand(6, 5, 224, 224)
    still[:, 3:] = 0  # no flow
    x = torch.cat([still, moving]).half()
    ce = torch.cat([torch.full((6, 5), 0.5), torch.tensor([[0.5, 0.9, 1.2, 1.6, 2.5]] * 6)])
    selector = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("predictor")}
    history = fit_ratio(net, x, ce, LACTrainConfig(ratio_fit_steps=200, lam=0.2))
    _, logits = net(x.float())
    picks = [CANDIDATE_RATIOS[j] for j in logits.argmax(-1).tolist()]
    assert picks == [0.8] * 6 + [0.2] * 6
    assert history[-1]["agree_oracle"] == 1.0 and history[-1]["cost_of_pick"] == pytest.approx(history[-1]["oracle_cost"])
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in selector.items())


def test_ratio_table_scores_each_candidate_as_from_its_own_full_prefill(policy_images):
    """The table prefills the previous frame once per pair and copies the cache per candidate: each entry is the
    loss ``cached_ce`` gives with a prefill of its own, bit for bit, and the copy leaves the original untouched."""
    from bench.core.models.processor import action_tokens
    from bench.harness.openvla_policy import TINY_CHECKPOINT, OpenVLAPolicy
    from methods.lac.train import cached_ce, frame_embeddings, previous_step_cache, ratio_table
    from methods.lac.train_data import SaliencyProbe

    policy = OpenVLAPolicy("tiny-openvla", TINY_CHECKPOINT, SaliencyProbe(), "libero_object")
    data = {"frames": [policy_images[:2]], "instructions": np.array(["pick up the ketchup and place it in the basket"])}
    prev, cur = frame_embeddings(policy, data)[0]
    torch.manual_seed(0)
    net = LACNet()
    x = lac_input(policy_images[1], policy_images[0])
    tokens = action_tokens(np.linspace(-0.9, 0.9, 7)[None], policy.model.cfg.n_text_vocab)[0].tolist()
    sample = {"prev": prev, "cur": cur, "x": x, "tokens": tokens}
    table = ratio_table(net, policy, [sample], log=lambda m: None)[0]
    scores, _ = net(x.float())
    with torch.no_grad():
        own = [cached_ce(policy, prev, cur, sample["tokens"], soft_cache_mask(scores, torch.tensor([r]), 1.0)[0])
               for r in CANDIDATE_RATIOS]
        assert table.tolist() == [c.item() for c in own]
        full = previous_step_cache(policy, prev)
        before = [t.clone() for t in full.k]
        cached_ce(policy, prev, cur, sample["tokens"], torch.zeros(len(scores[0])), cache=full.copy())
    assert all(torch.equal(a, b) for a, b in zip(before, full.k, strict=True))
