"""Training LAC's modules against a frozen VLA (our reading of the paper; choices in docs/lac.md).

Stage I (attention alignment): MSE(selector(V_t), S_VLA) with S_VLA the frozen VLA's layer-15 text→vision
  head-mean attention on frame t under full compute, min-max normalised per frame.
Stage II (end to end): the previous frame's full prefill fills the KV cache; the current frame's prefill
  runs in the executor's soft-mix mode, K/V = m·fresh + (1−m)·cached for visual tokens, with
  m = hard top-k forward / steep-sigmoid backward mask from the selector at the ratio the predictor picks
  (Gumbel-softmax, straight-through); loss = CE(7 action tokens | teacher tokens) + λ·L_ratio,
  L_ratio = −Σ_j p̃_j r_j. Target tokens = the full-compute model's own greedy tokens (teacher mode) or the
  demos' action tokens (demo mode, ``data``).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from methods.lac.nets import CANDIDATE_RATIOS, LACNet, gumbel_ratio, soft_cache_mask
from methods.lac.train_data import collect, collect_demos, inputs, pairs


@dataclass
class LACTrainConfig:
    suite: str = "libero_object"
    tasks: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    teacher_rollouts: int = 8
    steps_per_rollout: int = 30
    stage1_steps: int = 300
    stage2_steps: int = 300
    batch: int = 8
    lr: float = 1e-3
    lam: float = 0.2  # λ of the ratio reward
    tau: float = 1.0  # Gumbel-softmax temperature
    tau_s: float = 0.05  # soft-mask temperature (scores live in [0, 1])
    motion: str = "flow"
    stage1: bool = True
    seed: int = 0
    teacher_data: str = ""  # reuse a teacher.npz from an earlier run (default: <out>/teacher.npz)
    data: list[str] = field(default_factory=list)  # demo mode: LIBERO-layout demo files/folders
    demos: int = 8  # demo mode: demos to take a window of steps_per_rollout frames from


def stage1_step(net: LACNet, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    scores, _ = net(x.float())
    return F.mse_loss(scores, target)


def stage2_loss(net: LACNet, policy: Any, sample: dict, cfg: LACTrainConfig) -> tuple[torch.Tensor, dict]:
    """One (previous, current) frame pair through the frozen VLA with a soft cache mask."""
    model = policy.model
    lm = model.language_model
    ratios = torch.tensor(CANDIDATE_RATIOS)
    prev, cur = sample["prev"], sample["cur"]  # prefill embeddings of the two frames (precomputed, frozen)
    with torch.no_grad():
        cache = model.new_cache(prev.shape[1])
        lm.prefill(prev, cache)  # the previous control step: full compute fills every slot
        cache.steps += 1
    scores, logits = net(sample["x"].float())
    p, ratio = gumbel_ratio(logits, ratios, cfg.tau)
    mask = soft_cache_mask(scores, ratio, cfg.tau_s)[0]
    mix = torch.ones(cache.capacity)
    mix = torch.cat([mix[:1], mask, mix[1 + mask.numel():]])
    n = cur.shape[1]
    hidden, _ = lm.prefill(cur, cache, None, None, soft_mix=mix)
    teacher = torch.as_tensor(sample["tokens"])
    ce = [F.cross_entropy(lm.logits(hidden, None), teacher[:1])]
    for i in range(6):
        hidden = lm.decode(teacher[i : i + 1], n + i, n + i, cache, None)
        ce.append(F.cross_entropy(lm.logits(hidden, None), teacher[i + 1 : i + 2]))
    task = torch.stack(ce).mean()
    l_ratio = -(p * ratios).sum()
    metrics = {"ce": task.item(), "ratio": ratio.item(), "cached": 1 - mask.mean().item()}
    return task + cfg.lam * l_ratio, metrics


@torch.no_grad()
def frame_embeddings(policy: Any, data: dict) -> list[list[torch.Tensor]]:
    """LLM input embeddings ([BOS] + patches + prompt) of every recorded frame, from the frozen VLA."""
    model, processor, out = policy.model, policy.processor, []
    weights = model.projector.fc1.weight
    for e, frames in enumerate(data["frames"]):
        ids = torch.tensor([model.with_empty_token(processor.prompt_ids(str(data["instructions"][e])))])
        out.append([model.prefill_embeddings(processor.pixel_values(f, like=weights), ids, None) for f in frames])
    return out


def train_lac(policy: Any, cfg: LACTrainConfig, out: Path, log=print) -> Path:
    """Both stages with checkpoints (resume on rerun); writes lac.safetensors, config, curves."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    for p in policy.model.parameters():
        p.requires_grad_(False)
    out.mkdir(parents=True, exist_ok=True)
    data_path = Path(cfg.teacher_data) if cfg.teacher_data else out / ("demos.npz" if cfg.data else "teacher.npz")
    if cfg.data:
        data = collect_demos(policy, cfg.data, cfg.demos, cfg.steps_per_rollout, data_path, cfg.seed, log)
    else:
        data = collect(policy, cfg.suite, cfg.tasks, cfg.teacher_rollouts, cfg.steps_per_rollout, data_path, log)
    keys = pairs(data)
    x_all = inputs(data, cfg.motion)
    net = LACNet()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    ckpt = out / "checkpoint.pt"
    state = {"stage": 1 if cfg.stage1 else 2, "step": 0, "history": {"stage1": [], "stage2": []}}
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        log(f"resumed at stage {state['stage']} step {state['step']}")
    rng = np.random.default_rng(cfg.seed + state["step"])
    target = torch.from_numpy(np.stack([data["saliency"][e, t] for e, t in keys]))
    while state["stage"] == 1 and state["step"] < cfg.stage1_steps:
        idx = rng.choice(len(keys), cfg.batch)
        loss = stage1_step(net, x_all[idx], target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        state["history"]["stage1"].append(loss.item())
        if state["step"] % 50 == 0:
            log(f"stage I step {state['step']}/{cfg.stage1_steps}: mse {np.mean(state['history']['stage1'][-50:]):.4f}")
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt)
    if state["stage"] == 1:
        state = {**state, "stage": 2, "step": 0}
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr / 3)
    embeds = frame_embeddings(policy, data)
    while state["step"] < cfg.stage2_steps:
        opt.zero_grad()
        metrics = []
        for i in rng.choice(len(keys), cfg.batch // 2):
            e, t = keys[i]
            sample = {"prev": embeds[e][t - 1], "cur": embeds[e][t], "x": x_all[i : i + 1], "tokens": data["tokens"][e, t]}
            loss, m = stage2_loss(net, policy, sample, cfg)
            (loss / (cfg.batch // 2)).backward()
            metrics.append(m)
        opt.step()
        state["step"] += 1
        state["history"]["stage2"].append({k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]})
        if state["step"] % 25 == 0:
            recent = state["history"]["stage2"][-25:]
            log(f"stage II step {state['step']}/{cfg.stage2_steps}: ce {np.mean([h['ce'] for h in recent]):.3f} "
                f"ratio {np.mean([h['ratio'] for h in recent]):.2f}")
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt)
    final = out / "lac.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(final))
    (out / "train_config.json").write_text(json.dumps({**asdict(cfg), "candidate_ratios": CANDIDATE_RATIOS,
                                                       "history": state["history"]}, indent=1))
    plot_curves(state["history"], out / "loss_curves.png")
    return final


def plot_curves(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=110)
    if history["stage1"]:
        axes[0].plot(history["stage1"])
    axes[0].set(title="Stage I: selector vs VLA saliency (MSE)", xlabel="step")
    s2 = history["stage2"]
    axes[1].plot([h["ce"] for h in s2])
    axes[1].set(title="Stage II: action-token CE", xlabel="step")
    axes[2].plot([h["ratio"] for h in s2], label="predicted ratio")
    axes[2].plot([h["cached"] for h in s2], label="cached share")
    axes[2].set(title="Stage II: cache ratio", xlabel="step")
    axes[2].legend(fontsize=8)
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
