"""``bench train policy``: behaviour cloning of an OpenVLA-architecture preset on LIBERO-layout demos.

Cross-entropy on the 7 action tokens (teacher forcing, as OpenVLA fine-tunes), AdamW with warm-up and cosine
decay, random-crop augmentation. Resumable: ``train_state.pt`` (model, optimizer, sampler RNG, step) is written
atomically every ``save_every`` steps; the loss log is appended to ``loss.csv``. The result is an HF-format
checkpoint directory whose ``config.json`` carries the data's per-suite ``norm_stats``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.models.checkpoint import save_openvla
from bench.models.openvla import normalize_pixels
from bench.models.presets import LIBERO_SUITES, build, preset
from bench.models.tokenizer import build_word_tokenizer
from bench.train.bc_data import BCDataset, build_dataset, random_crop
from bench.train.bc_forward import action_logits


@dataclass
class BCConfig:
    data: list[str]
    preset: str = "tiny"
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    save_every: int = 100
    threads: int = 0  # 0: torch's default
    notes: dict = field(default_factory=dict)


def lr_at(step: int, cfg: BCConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def full_norm_stats(stats: dict[str, dict]) -> dict[str, dict]:
    """Per-suite stats for the suites with data; other LIBERO suites get the pooled stats, marked as such."""
    pooled = next(iter(stats.values())) if len(stats) == 1 else _pool(stats)
    out = {s: {**pooled, "source": f"pooled from {', '.join(sorted(stats))} (no demos of this suite)"}
           for s in LIBERO_SUITES if s not in stats}
    return {**out, **{s: {**v, "source": "demos"} for s, v in stats.items()}}


def _pool(stats: dict[str, dict]) -> dict:
    keys = ("q01", "q99")
    a = {k: [min(v["action"][k][i] for v in stats.values()) if k == "q01" else max(v["action"][k][i] for v in stats.values())
             for i in range(7)] for k in keys}
    return {"action": {**a, "mask": [True] * 6 + [False]}}


def train_policy(cfg: BCConfig, out: Path, log: Callable[[str], None] = print) -> Path:
    from envs.libero import instruction_words

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = preset(cfg.preset)
    tokenizer = build_word_tokenizer(instruction_words(), model_cfg.n_text_vocab, model_cfg.n_action_bins)
    data = build_dataset(cfg.data, tokenizer, model_cfg.n_text_vocab, log=log)
    log(f"{len(data)} samples from {data.n_demos} demos, {len(data.prompts)} instructions, suites {sorted(data.stats)}")
    model = build(dataclasses.replace(model_cfg, norm_stats=full_norm_stats(data.stats)), seed=cfg.seed).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, state_file = 0, out / "train_state.pt"
    if state_file.exists():
        state = torch.load(state_file, weights_only=False)
        if state["config"] != dataclasses.asdict(cfg):
            log("note: resuming with a changed config; the saved step and weights are kept")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step = state["step"]
        log(f"resumed at step {step}")
    loss_log = (out / "loss.csv").open("a")
    if step == 0:
        loss_log.write("step,loss,token_acc,lr,seconds\n")
    t0 = time.perf_counter()
    while step < cfg.steps:
        loss, acc = _train_step(model, opt, data, gen, cfg, step)
        step += 1
        loss_log.write(f"{step},{loss:.5f},{acc:.4f},{lr_at(step - 1, cfg):.3g},{time.perf_counter() - t0:.1f}\n")
        loss_log.flush()
        if step % 10 == 0:
            log(f"step {step}/{cfg.steps}  loss {loss:.3f}  token acc {acc:.3f}  {(time.perf_counter() - t0) / 60:.1f} min")
        if step % cfg.save_every == 0 or step == cfg.steps:
            tmp = state_file.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                        "step": step, "config": dataclasses.asdict(cfg)}, tmp)
            tmp.replace(state_file)
    loss_log.close()
    final = out / "checkpoint"
    save_openvla(model.eval(), tokenizer, final)
    (out / "training.json").write_text(json.dumps({
        "config": dataclasses.asdict(cfg), "samples": len(data), "demos": data.n_demos,
        "instructions": len(data.prompts), "suites": sorted(data.stats),
        "n_parameters": sum(p.numel() for p in model.parameters())}, indent=2) + "\n")
    plot_loss(out / "loss.csv", out / "loss_curve.png")
    return final


def _train_step(model, opt, data: BCDataset, gen: torch.Generator, cfg: BCConfig, step: int) -> tuple[float, float]:
    idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
    images = random_crop(data.images[idx], gen)
    targets = data.tokens[idx]
    prompts = [data.prompts[int(i)] for i in data.prompt_index[idx]]
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    logits = action_logits(model, normalize_pixels(images), prompts, targets)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    acc = (logits.argmax(-1) == targets).float().mean()
    return float(loss.detach()), float(acc)


def plot_loss(csv: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv)
    df = df.drop_duplicates("step", keep="last")
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(df["step"], df["loss"].rolling(20, min_periods=1).mean())
    ax[0].set(xlabel="step", ylabel="action-token CE (20-step mean)", yscale="log")
    ax[1].plot(df["step"], df["token_acc"].rolling(20, min_periods=1).mean())
    ax[1].set(xlabel="step", ylabel="action-token accuracy (train batch)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
