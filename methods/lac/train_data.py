"""LAC training data: frames with the frozen VLA's layer-15 text→vision saliency under full compute and the
action tokens to predict. Teacher mode: frames from real LIBERO rollouts of the policy, targets = its own greedy
tokens (no dataset needed). Demo mode: consecutive frames of LIBERO-layout demos, targets = the demos' actions
tokenised with the policy's norm stats (as behaviour cloning does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.errors import BenchError, reading
from bench.core.models.steering import PrefillState, Steering
from methods.common import ATTN_LAYER, text_to_vision


class SaliencyProbe(Steering):
    """Full compute, asking for layer-15 attention: the Stage-I target (min-max normalised per frame)."""

    attention_layers = frozenset({ATTN_LAYER})

    def at_layer(self, state: PrefillState) -> None:
        if state.attn is not None:
            s = text_to_vision(state.attn, state.attn_query_slots, 256, 35, state.n_prefill)
            self.saliency = (s - s.min()) / (s.max() - s.min() + 1e-8)


def load_npz(path: Path) -> dict:
    with reading(path, "LAC training-data .npz"):
        return dict(np.load(path, allow_pickle=False))


def collect(policy: Any, suite_name: str, tasks: list[int], episodes: int, steps: int, path: Path, log=print) -> dict:
    """Roll the policy out (full compute) on ``episodes`` init states spread over ``tasks``; cache to ``path``.

    The policy must steer with a :class:`SaliencyProbe`: one forward per step then gives the action, the
    teacher tokens and the saliency (statistics are computed beside SDPA, so actions equal the baseline's).
    """
    if path.exists():
        return load_npz(path)
    from envs.libero import LiberoSuite

    probe = _probe(policy)
    suite = LiberoSuite(suite_name)
    frames, instructions, saliency, tokens = [], [], [], []
    for e in range(episodes):
        task = suite.task(tasks[e % len(tasks)])
        obs = task.start(e // len(tasks))
        policy.reset(task.instruction, e)
        ep_frames, ep_sal, ep_tok = [], [], []
        for _ in range(steps):
            step = policy.act(obs)
            ep_frames.append(step.image)
            ep_tok.append(step.tokens)
            ep_sal.append(probe.saliency.float().numpy())
            obs, _ = task.step(step.action)
        task.close()
        frames.append(ep_frames)
        saliency.append(ep_sal)
        tokens.append(ep_tok)
        instructions.append(task.instruction)
        log(f"teacher rollout {e + 1}/{episodes}: {task.name}")
    return _save(path, frames, saliency, tokens, instructions)


def collect_demos(policy: Any, roots: list[str], n_demos: int, steps: int, path: Path, seed: int = 0,
                  log=print) -> dict:
    """Demo mode: a seeded window of ``steps`` consecutive frames from each of ``n_demos`` demos (round robin
    over the demo files); saliency from one full-compute forward per frame, targets from the demo actions."""
    if path.exists():
        return load_npz(path)
    from envs.libero_hdf5 import demo_files, load_demos

    probe = _probe(policy)
    files = [f for root in roots for f in demo_files(root)]
    if not files:
        raise BenchError(f"no .hdf5 demo files under {', '.join(roots)}")
    stats = policy.model.cfg.norm_stats[policy.unnorm_key]
    rng = np.random.default_rng(seed)
    frames, instructions, saliency, tokens = [], [], [], []
    for k in range(n_demos):
        demo = next((d for i, d in enumerate(load_demos(files[k % len(files)])) if i == k // len(files)), None)
        if demo is None or len(demo.actions) < steps:
            raise BenchError(f"{files[k % len(files)]} has no demo {k // len(files)} with ≥ {steps} steps")
        start = int(rng.integers(0, len(demo.actions) - steps + 1))
        tokens.append(policy.processor.tokens_of_env_actions(demo.actions[start: start + steps], stats))
        policy.reset(demo.instruction, k)
        ep_frames, ep_sal = [], []
        for t in range(start, start + steps):
            ep_frames.append(policy.act({"agentview_image": demo.agentview[t]}).image)
            ep_sal.append(probe.saliency.float().numpy())
        frames.append(ep_frames)
        saliency.append(ep_sal)
        instructions.append(demo.instruction)
        log(f"demo {k + 1}/{n_demos}: {demo.name} steps {start}–{start + steps - 1}")
    return _save(path, frames, saliency, tokens, instructions)


def _probe(policy: Any) -> SaliencyProbe:
    if not isinstance(policy.steering, SaliencyProbe):
        raise TypeError("LAC data collection needs a policy built with a SaliencyProbe steering")
    return policy.steering


def _save(path: Path, frames: list, saliency: list, tokens: list, instructions: list) -> dict:
    data = {"frames": np.asarray(frames, np.uint8), "saliency": np.asarray(saliency, np.float32),
            "tokens": np.asarray(tokens, np.int64), "instructions": np.asarray(instructions)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return data


def pairs(data: dict) -> list[tuple[int, int]]:
    """(episode, t) with a previous frame: the samples both stages train on."""
    e, t = data["frames"].shape[:2]
    return [(i, j) for i in range(e) for j in range(1, t)]


def inputs(data: dict, motion: str) -> torch.Tensor:
    """Precomputed 5-channel inputs [N, 5, 224, 224] (fp16) for every pair, in ``pairs`` order."""
    from methods.lac.flow import lac_input
    from methods.lac.method import language_input

    out = []
    for e, t in pairs(data):
        f, prev = data["frames"][e, t], data["frames"][e, t - 1]
        x = lac_input(f, prev) if motion == "flow" else language_input(f, torch.from_numpy(data["saliency"][e, t - 1]))
        out.append(x[0].half())
    return torch.stack(out)
