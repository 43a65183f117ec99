"""Training LAC's modules against a frozen VLA (our reading of the paper; choices in docs/lac.md).

Stage I (attention alignment): MSE(selector(V_t), S_VLA) with S_VLA the frozen VLA's layer-15 text→vision
  head-mean attention on frame t under full compute, min-max normalised per frame.
Stage II (end to end): the previous frame's full prefill fills the KV cache; the current frame's prefill
  runs in the executor's soft-mix mode, K/V = m·fresh + (1−m)·cached for visual tokens, with
  m = hard top-k forward / steep-sigmoid backward mask from the selector at the ratio the predictor picks
  (Gumbel-softmax, straight-through); loss = CE(7 action tokens | teacher tokens) + λ·L_ratio,
  L_ratio = −Σ_j p̃_j r_j. Target tokens = the full-compute model's own greedy tokens (teacher mode) or the
  demos' action tokens (demo mode, ``data``).
Ratio fit (ours, ``ratio_fit_steps`` > 0; docs/lac.md): one Gumbel sample per pair left the predictor constant, so
  with the selector fixed we tabulate the Stage II task loss of every pair at every candidate ratio and fit the
  predictor to each pair's optimum of the paper's loss, CE_j − λ r_j (softened by a temperature).
  ``lac_stage2.safetensors`` keeps the modules from before the fit (the `lac-no-ratio-fit` variant).
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
    ratio_fit_steps: int = 300  # predictor fit to per-frame targets from the Stage II loss (0: the paper's two stages)
    ratio_fit_lr: float = 3e-3
    ratio_fit_temperature: float = 0.05  # T of the targets q ∝ exp(−(CE_j − λ r_j)/T)


def stage1_step(net: LACNet, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    scores, _ = net(x.float())
    return F.mse_loss(scores, target)


def previous_step_cache(policy: Any, prev: torch.Tensor) -> Any:
    """The cache after the previous control step: ``prev``'s full prefill fills every slot."""
    model = policy.model
    with torch.no_grad():
        cache = model.new_cache(prev.shape[1])
        model.language_model.prefill(prev, cache)
        cache.steps += 1
    return cache


def cached_ce(policy: Any, prev: torch.Tensor, cur: torch.Tensor, tokens: Any, mask: torch.Tensor,
              cache: Any = None) -> torch.Tensor:
    """Mean CE of the 7 target tokens when ``prev``'s full prefill is the cache and ``cur``'s prefill mixes
    fresh and cached visual K/V by ``mask`` (1 = recompute), decoding teacher-forced. ``cache``: that full
    prefill already computed (it is written to)."""
    lm = policy.model.language_model
    cache = previous_step_cache(policy, prev) if cache is None else cache
    mix = torch.ones(cache.capacity)
    mix = torch.cat([mix[:1], mask, mix[1 + mask.numel():]])
    n = cur.shape[1]
    hidden, _ = lm.prefill(cur, cache, None, None, soft_mix=mix)
    teacher = torch.as_tensor(tokens)
    ce = [F.cross_entropy(lm.logits(hidden, None), teacher[:1])]
    for i in range(6):
        hidden = lm.decode(teacher[i : i + 1], n + i, n + i, cache, None)
        ce.append(F.cross_entropy(lm.logits(hidden, None), teacher[i + 1 : i + 2]))
    return torch.stack(ce).mean()


def stage2_loss(net: LACNet, policy: Any, sample: dict, cfg: LACTrainConfig) -> tuple[torch.Tensor, dict]:
    """One (previous, current) frame pair through the frozen VLA with a soft cache mask."""
    ratios = torch.tensor(CANDIDATE_RATIOS)
    scores, logits = net(sample["x"].float())
    p, ratio = gumbel_ratio(logits, ratios, cfg.tau)
    mask = soft_cache_mask(scores, ratio, cfg.tau_s)[0]
    task = cached_ce(policy, sample["prev"], sample["cur"], sample["tokens"], mask)
    l_ratio = -(p * ratios).sum()
    metrics = {"ce": task.item(), "ratio": ratio.item(), "cached": 1 - mask.mean().item()}
    return task + cfg.lam * l_ratio, metrics


@torch.no_grad()
def ratio_table(net: LACNet, policy: Any, samples: list[dict], log=print) -> torch.Tensor:
    """[pairs, candidates]: the Stage II task loss of every pair at every candidate ratio, selector frozen; the
    previous frame's full prefill is computed once per pair and copied for each candidate."""
    rows = []
    for i, sample in enumerate(samples):
        scores, _ = net(sample["x"].float())
        full = previous_step_cache(policy, sample["prev"])
        rows.append([cached_ce(policy, sample["prev"], sample["cur"], sample["tokens"],
                               soft_cache_mask(scores, torch.tensor([r]), 1.0)[0],  # forward: the hard mask
                               cache=full.copy()).item()
                     for r in CANDIDATE_RATIOS])
        if (i + 1) % 100 == 0:
            log(f"ratio table: {i + 1}/{len(samples)} pairs")
    return torch.tensor(rows)


def fit_ratio(net: LACNet, x: torch.Tensor, ce: torch.Tensor, cfg: LACTrainConfig) -> list[dict]:
    """Fit the predictor (the selector is a separate branch, untouched) to each pair's Boltzmann target
    q_j ∝ exp(−(CE_j − λ r_j)/T) by cross-entropy; full batch.

    q is the per-frame optimum of the paper's loss, softened by T. Minimising the expectation Σ_j p_j (CE_j − λ r_j)
    directly collapsed to the best constant ratio, even on features that separate the frames (docs/lac.md)."""
    with torch.no_grad():
        pooled = torch.cat([net.predictor.pooled_input(x[i : i + 128]) for i in range(0, len(x), 128)])
    cost = ce - cfg.lam * torch.tensor(CANDIDATE_RATIOS)
    target, best = (-cost / cfg.ratio_fit_temperature).softmax(-1), cost.argmin(1)
    opt = torch.optim.Adam(net.predictor.parameters(), lr=cfg.ratio_fit_lr)
    history = []
    for step in range(cfg.ratio_fit_steps):
        logp = net.predictor.from_pooled(pooled).log_softmax(-1)
        loss = -(target * logp).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == cfg.ratio_fit_steps - 1:
            pick = logp.argmax(-1)
            history.append({"step": step, "loss": loss.item(), "cost_of_pick": cost.gather(1, pick[:, None]).mean().item(),
                            "best_constant_cost": cost.mean(0).min().item(),
                            "oracle_cost": cost.min(1).values.mean().item(),
                            "agree_oracle": (pick == best).float().mean().item(),
                            "ratio_mean": torch.tensor(CANDIDATE_RATIOS)[pick].mean().item()})
    return history


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
    """Both stages and the ratio fit, with checkpoints (resume on rerun); writes lac.safetensors (and
    lac_stage2.safetensors, the modules before the fit), train_config.json, loss_curves.png."""
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

    def sample(i: int) -> dict:
        e, t = keys[i]
        return {"prev": embeds[e][t - 1], "cur": embeds[e][t], "x": x_all[i : i + 1], "tokens": data["tokens"][e, t]}

    while state["stage"] == 2 and state["step"] < cfg.stage2_steps:
        opt.zero_grad()
        metrics = []
        for i in rng.choice(len(keys), cfg.batch // 2):
            loss, m = stage2_loss(net, policy, sample(i), cfg)
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
    if state["stage"] == 2:
        save_weights(net, out / "lac_stage2.safetensors")
        state = {**state, "stage": 3}
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt)
    if cfg.ratio_fit_steps and "ratio_fit" not in state["history"]:
        table_path = out / "ratio_table.npy"  # the expensive part (5 prefills per pair): kept for a rerun
        if table_path.exists():
            ce = torch.from_numpy(np.load(table_path))
        else:
            ce = ratio_table(net, policy, [sample(i) for i in range(len(keys))], log)
            np.save(table_path, ce.numpy())
        state["history"]["ratio_fit"] = fit_ratio(net, x_all, ce, cfg)
        last = state["history"]["ratio_fit"][-1]
        log(f"ratio fit: CE − λr of the picks {last['cost_of_pick']:.3f} (best constant ratio "
            f"{last['best_constant_cost']:.3f}, per-pair optimum {last['oracle_cost']:.3f}), pick = optimum on "
            f"{last['agree_oracle']:.0%} of pairs, mean ratio {last['ratio_mean']:.2f}")
    final = out / "lac.safetensors"
    save_weights(net, final)
    (out / "train_config.json").write_text(json.dumps({**asdict(cfg), "candidate_ratios": CANDIDATE_RATIOS,
                                                       "history": state["history"]}, indent=1))
    plot_curves(state["history"], out / "loss_curves.png")
    return final


def save_weights(net: LACNet, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def plot_curves(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14.5, 3.2), dpi=110)
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
    fit = history.get("ratio_fit", [])
    if fit:
        steps = [h["step"] for h in fit]
        axes[3].plot(steps, [h["cost_of_pick"] for h in fit], label="picked ratios")
        axes[3].plot(steps, [h["best_constant_cost"] for h in fit], ":", label="best constant ratio")
        axes[3].plot(steps, [h["oracle_cost"] for h in fit], "--", label="per-pair optimum")
        axes[3].legend(fontsize=8)
    axes[3].set(title="ratio fit: CE − λr of the pick", xlabel="step")
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
