"""CogACT (issue 19): the shared prefill, the DiT against timm's blocks, DDIM + CFG by hand, the ensemble and
sticky gripper against the reference formulas, reference-layout checkpoints, and every method on the tiny CogACT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.core.flops import MacMeter
from bench.core.models.cogact import CogACT, CogACTHead
from bench.core.models.cogact_actions import AdaptiveEnsembler, StickyGripper, unnormalize_chunk
from bench.core.models.diffusion import DDIMSampler, ddim_timesteps
from bench.core.models.dit import DiT, DiTConfig
from bench.core.models.presets import tiny, tiny_dit
from tests.conftest import pixels
from tests.timm_reference import import_timm

INSTRUCTION = "pick up the alphabet soup and place it in the basket"


@pytest.fixture(scope="module")
def tiny_cogact_policy_parts():
    from bench.harness.cogact_policy import tiny_cogact

    return tiny_cogact("fp32", "cpu")


def test_cognition_feature_is_the_openvla_executors_prefill_on_shared_weights(frames, tiny_cogact_policy_parts):
    from bench.core.models.checkpoint import load_openvla
    from bench.core.models.processor import OpenVLAProcessor, model_image
    from bench.harness.openvla_policy import TINY_CHECKPOINT
    from envs.libero import upright

    cogact, tokenizer = tiny_cogact_policy_parts
    openvla, _ = load_openvla(TINY_CHECKPOINT)
    ids = OpenVLAProcessor(openvla.cfg, tokenizer).prompt_ids(INSTRUCTION)
    px = pixels(openvla, model_image(upright(frames[0])))
    pred = cogact.predict_action(px, ids, cogact.new_cache(len(ids) + 2 + 256), noise=torch.zeros(1, 16, 7))
    # the OpenVLA executor over the same sequence: prompt + empty token + EOS (the cognition token)
    full = torch.tensor([[*ids, openvla.cfg.empty_token_id, 2]])
    embeds = openvla.prefill_embeddings(px, full, None)
    hidden, _ = openvla.language_model.prefill(embeds, openvla.new_cache(embeds.shape[1]))
    assert cogact.with_empty_token(ids)[-2:] == [3, 2]
    assert torch.equal(pred.hidden, hidden)


def timm_block(dim: int, heads: int):
    import_timm()
    from timm.models.vision_transformer import Attention, Mlp

    attn = Attention(dim, num_heads=heads, qkv_bias=True)
    mlp = Mlp(in_features=dim, hidden_features=4 * dim, act_layer=lambda: torch.nn.GELU(approximate="tanh"), drop=0)
    return attn, mlp


def test_dit_block_equals_timm_attention_and_mlp():
    torch.manual_seed(0)
    dit = DiT(DiTConfig(64, 1, 4, token_size=32)).eval()
    attn, mlp = timm_block(64, 4)
    attn.load_state_dict(dit.blocks[0].attn.state_dict())
    mlp.load_state_dict(dit.blocks[0].mlp.state_dict())
    x = torch.randn(2, 17, 64)
    block = dit.blocks[0]
    want = x + attn(block.norm1(x))
    want = want + mlp(block.norm2(want))
    torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-6)


def test_reference_parameter_names():
    names = set(DiT(tiny_dit(64)).state_dict())
    for key in ("x_embedder.linear.weight", "history_embedder.linear.bias", "t_embedder.mlp.0.weight",
                "t_embedder.mlp.2.weight", "z_embedder.linear.weight", "z_embedder.uncondition", "positional_embedding",
                "blocks.1.attn.qkv.weight", "blocks.1.attn.proj.bias", "blocks.1.mlp.fc1.weight",
                "blocks.1.mlp.fc2.bias", "final_layer.linear.weight"):
        assert key in names
    assert DiT(tiny_dit(64)).z_embedder.uncondition.shape == (1, 64)


def test_ddim10_visits_the_reference_timesteps():
    assert ddim_timesteps(100, 10) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert ddim_timesteps(100, 2) == [0, 50] and ddim_timesteps(100, 1) == [50]


def alpha_bar_base(t: int) -> float:
    """ᾱ of the 100-step squaredcos_cap_v2 schedule at step t, by hand: ∏ (1 − β_i), β_i capped at 0.999."""
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return math.prod(1 - min(1 - f((i + 1) / 100) / f(i / 100), 0.999) for i in range(t + 1))


def test_two_step_ddim_with_cfg_by_hand():
    """Two DDIM steps (t = 50, then 0) of a guided ε that is linear in x, computed by hand in float64."""
    cond_w, uncond_w, scale = 0.3, -0.2, 1.5
    noise = torch.tensor([[[0.5, -1.0, 2.0]]])

    def eps(x, t):  # what DiT.guided_eps returns: ε_u + s(ε_c − ε_u) with ε_c = a·x + t/100, ε_u = b·x
        e_c, e_u = cond_w * x + t[:, None, None] / 100, uncond_w * x
        return e_u + scale * (e_c - e_u)

    got = DDIMSampler(100, 2).sample(eps, noise)
    a50, a0 = alpha_bar_base(50), alpha_bar_base(0)
    x = noise.double().numpy()
    for a, a_prev, t in ((a50, a0, 50), (a0, 1.0, 0)):
        e = uncond_w * x + scale * (cond_w * x + t / 100 - uncond_w * x)
        x0 = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e
    np.testing.assert_allclose(got.numpy(), x, rtol=1e-5)


def test_guided_eps_is_the_cfg_combination_of_two_forwards():
    torch.manual_seed(0)
    dit = DiT(tiny_dit(32)).eval()
    x, t = torch.randn(1, 16, 7), torch.tensor([40, 40])
    cond, uncond = torch.randn(1, 1, 32), dit.z_embedder.uncondition[None]
    got = dit.guided_eps(torch.cat([x, x]), t, torch.cat([cond, uncond]), 1.5)
    e_c, e_u = dit(x, t[:1], cond), dit(x, t[:1], uncond)
    torch.testing.assert_close(got[0], (e_u + 1.5 * (e_c - e_u))[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(got[0], got[1])


def test_sample_chunk_is_deterministic_for_given_noise_and_depends_on_the_condition():
    torch.manual_seed(0)
    model = CogACT(tiny(), CogACTHead(tiny_dit(64))).eval()
    noise = torch.randn(1, 16, 7)
    a, b = model.sample_chunk(torch.ones(1, 64), noise), model.sample_chunk(torch.ones(1, 64), noise)
    assert a.shape == (1, 16, 7) and torch.equal(a, b)
    assert not torch.equal(a, model.sample_chunk(-torch.ones(1, 64), noise))


def test_unnormalize_chunk_clips_thresholds_the_gripper_and_keeps_unmasked_dims():
    stats = {"q01": [-2.0] * 6 + [0.0], "q99": [2.0] * 6 + [1.0], "mask": [True] * 6 + [False]}
    chunk = np.array([[0.5, -3.0, 1.0, 0, 0, 0, 0.49], [0, 0, 0, 0, 0, 0, 0.5]])
    out = unnormalize_chunk(chunk, stats)
    np.testing.assert_allclose(out[0, :3], [1.0, -2.0, 2.0])
    assert out[0, 6] == 0 and out[1, 6] == 1


def test_adaptive_ensemble_matches_the_reference_formula():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(16, 7)) for _ in range(4)]
    ens = AdaptiveEnsembler(horizon=3, alpha=0.1)
    outs = [ens(c) for c in chunks]
    np.testing.assert_allclose(outs[0], chunks[0][0])  # one prediction: itself
    # step 3 (0-based): the last 3 chunks predicted it at their offsets 2, 1, 0
    preds = np.stack([chunks[1][2], chunks[2][1], chunks[3][0]])
    cos = np.array([p @ preds[-1] / (np.linalg.norm(p) * np.linalg.norm(preds[-1]) + 1e-7) for p in preds])
    w = np.exp(0.1 * cos) / np.exp(0.1 * cos).sum()
    np.testing.assert_allclose(outs[3], (w[:, None] * preds).sum(0))


def test_sticky_gripper_repeats_ten_steps_and_updates_prev_only_when_it_triggers():
    g = StickyGripper(10)
    out = [g(v) for v in [1.0, 1.0, 0.0] + [0.0] * 10 + [1.0]]
    assert out[:2] == [0.0, 0.0]
    assert out[2:12] == [1.0] * 10  # close (prev 1 − cur 0) held for 10 steps
    assert out[12] == 0.0  # prev is 0 now: no change → 0
    assert out[13] == -1.0  # open again


def test_reference_layout_checkpoint_round_trip(tmp_path, frames, tiny_cogact_policy_parts):
    from bench.core.models.cogact_checkpoint import load_cogact, save_cogact

    model, tokenizer = tiny_cogact_policy_parts
    save_cogact(model, tokenizer, tmp_path)
    state = torch.load(next((tmp_path / "checkpoints").glob("*.pt")), weights_only=True)["model"]
    assert set(state) == {"vision_backbone", "projector", "llm_backbone", "action_model"}
    assert "dino_featurizer.blocks.0.ls1.gamma" in state["vision_backbone"]
    assert "siglip_featurizer.blocks.0.attn.qkv.weight" in state["vision_backbone"]
    assert {"projector.0.weight", "projector.2.weight", "projector.4.bias"} <= set(state["projector"])
    assert "llm.model.layers.31.self_attn.q_proj.weight" in state["llm_backbone"] and "llm.lm_head.weight" in state["llm_backbone"]
    assert "net.blocks.1.attn.qkv.weight" in state["action_model"]
    loaded, _ = load_cogact(tmp_path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_dit_size_is_read_from_the_weights():
    from bench.core.models.cogact_checkpoint import _dit_from_weights

    with torch.device("meta"):
        net = DiT(DiTConfig(384, 6, 4, token_size=4096))
    cfg = _dit_from_weights({f"net.{k}": v for k, v in net.state_dict().items()}, 4096)
    assert (cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.chunk) == (384, 6, 4, 16)


def test_bad_run_directory_is_one_clear_error(tmp_path):
    from bench.core.errors import BenchError
    from bench.core.models.cogact_checkpoint import load_cogact

    with pytest.raises(BenchError, match=r"no config\.json"):
        load_cogact(tmp_path)


def cogact_episode(method: str, frames: np.ndarray, steps: int = 3) -> list:
    from bench.harness.cogact_policy import load_cogact_policy
    from bench.harness.registry import build_method

    steering, _ = build_method(method, {})
    policy = load_cogact_policy("tiny-cogact", None, steering, "libero_object")
    policy.reset(INSTRUCTION, 3)
    return [policy.act({"agentview_image": frames[i % 2]}) for i in range(steps)]


@pytest.fixture(scope="module")
def baseline_episode(frames):
    return cogact_episode("baseline", frames)


def registered_methods() -> list[str]:
    from bench.harness.registry import METHODS

    return [e.name for e in METHODS.entries() if e.name != "baseline"]


@pytest.mark.parametrize("method", registered_methods())
def test_every_method_steers_the_tiny_cogact_with_seeded_noise(method, frames, baseline_episode):
    first, second = cogact_episode(method, frames), cogact_episode(method, frames)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.action, b.action)  # seeded diffusion noise: reproducible
    dit = tiny_dit(64)
    per_forward = MacMeter()
    DiT(dit).count_macs(per_forward, 2)
    full = baseline_episode[0].record
    for step in first:
        assert step.record["macs_action_head"] == 10 * per_forward.total  # 10 DDIM steps × CFG batch of 2
        assert "time_action_head_s" in step.record and "time_decode_s" not in step.record
    assert min(s.record["paper_prefill_macs"] for s in first) < full["paper_prefill_macs"]  # the method acted


def test_unseeded_noise_is_the_reference_global_stream(frames):
    from bench.harness.cogact_policy import load_cogact_policy
    from methods.baseline import Baseline

    policy = load_cogact_policy("tiny-cogact-unseeded", None, Baseline(), "libero_object", noise="unseeded")
    policy.reset(INSTRUCTION, 0)
    torch.manual_seed(0)
    a = policy.act({"agentview_image": frames[0]}).action
    after_a = torch.rand(1)
    policy.reset(INSTRUCTION, 0)
    torch.manual_seed(0)
    torch.randn(1, 16, 7)  # the reference's initial noise, then 10 unused per-step draws of the CFG batch
    for _ in range(10):
        torch.randn(2, 16, 7)
    assert torch.equal(torch.rand(1), after_a)
    policy.reset(INSTRUCTION, 0)
    assert not np.array_equal(policy.act({"agentview_image": frames[0]}).action, a)  # a fresh draw


def test_every_method_runs_a_libero_episode_with_the_tiny_cogact(tmp_path):
    """`bench run --policy tiny-cogact` for each method (3 steps of libero_object task 0), in one process."""
    import json

    from rich.console import Console

    from bench.cli.run import run_command

    for method in ("baseline", "fastv", "sparsevlm", "vla-cache", "lac"):
        run_command(method=method, suite="libero_object", tasks=[0], episodes_per_task=1, max_steps=3,
                    policy="tiny-cogact", checkpoint=None, out=tmp_path, video=False, device="cpu", dtype="fp32",
                    params={}, retry_errors=False, seed=7, console=Console(quiet=True))
    manifests = [json.loads(p.read_text()) for p in tmp_path.rglob("manifest.json")]
    assert sorted(m["method"]["name"] for m in manifests) == ["baseline", "fastv", "lac", "sparsevlm", "vla-cache"]
    for m in manifests:
        assert m["spec"]["policy"] == "tiny-cogact" and m["policy"]["head"].startswith("diffusion action chunk")
        assert m["spec"]["policy_fingerprint"].endswith("+dit-seed0")
    episodes = [json.loads(line) for p in tmp_path.rglob("episodes.jsonl") for line in p.read_text().splitlines()]
    assert len(episodes) == 5 and all(e["status"] == "ok" and e["steps"] == 3 for e in episodes)


@pytest.mark.parametrize("robot", ["google_robot", "widowx"])
def test_chunk_head_converts_to_the_simpler_robot_conventions(robot):
    import dataclasses

    from bench.core.models.cogact import ChunkPrediction
    from bench.core.models.processor import OpenVLAProcessor
    from bench.harness.cogact_policy import ROBOTS, ChunkHead, euler_to_axis_angle

    key = ROBOTS[robot].unnorm_key
    stats = {key: {"action": {"q01": [-1.0] * 6 + [0.0], "q99": [1.0] * 6 + [1.0], "mask": [True] * 6 + [False]}}}
    head = ChunkHead(OpenVLAProcessor(dataclasses.replace(tiny(), norm_stats=stats), None), key, robot)
    head.reset(0)
    chunk = np.zeros((16, 7))
    chunk[:, :6] = [0.1, 0.0, -0.1, 0.2, -0.1, 0.3]
    opens = [1.0, 1.0, 0.0, 0.0]
    out = []
    for g in opens:
        chunk[:, 6] = g
        out.append(head.action(ChunkPrediction(chunk.copy(), None, None)))
    np.testing.assert_allclose(out[0][3:6], euler_to_axis_angle(np.array([0.2, -0.1, 0.3])))
    grip = [o[6] for o in out]
    if robot == "google_robot":
        # relative = prev − current open; the ensemble (horizon 2) blends 1 and 0 at step 2 (open ≈ 0.48, so
        # relative ≈ 0.52 > 0.5 triggers the sticky action), which is then held
        assert grip[:2] == [0.0, 0.0] and 0.5 < grip[2] < 0.6 and grip[3] == grip[2]
    else:  # absolute: +1 open, −1 close, after a 7-step ensemble of {0, 1} values
        assert grip[0] == grip[1] == 1.0 and grip[3] == -1.0


def test_euler_to_axis_angle_matches_transforms3d_convention():
    from bench.harness.cogact_policy import euler_to_axis_angle

    # transforms3d euler2axangle(0, 0, θ) = (z axis, θ); a pure roll is (x axis, roll)
    np.testing.assert_allclose(euler_to_axis_angle(np.array([0.0, 0.0, 0.4])), [0, 0, 0.4], atol=1e-12)
    np.testing.assert_allclose(euler_to_axis_angle(np.array([0.3, 0.0, 0.0])), [0.3, 0, 0], atol=1e-12)


def test_random_weight_cogact_for_latency_work(frames):
    from bench.harness.cogact_policy import random_weight_policy
    from methods.baseline import Baseline

    policy = random_weight_policy("tiny-cogact", Baseline(), "libero_object", "cpu", "bf16")
    assert policy.model.action_model.net.x_embedder.linear.weight.dtype == torch.float32  # the DiT stays fp32
    assert policy.model.projector.fc1.weight.dtype == torch.bfloat16
    policy.reset(INSTRUCTION, 0)
    step = policy.act({"agentview_image": frames[0]})
    assert step.action.shape == (7,) and policy.describe()["head_weights"] == "random"
