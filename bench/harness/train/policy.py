"""``bench train policy``: behaviour cloning of an OpenVLA-architecture preset, on CPU or CUDA.

Cross-entropy on the 7 action tokens (teacher forcing, as OpenVLA fine-tunes), AdamW with linear warm-up and
cosine decay to ``min_lr_frac``, OpenVLA's augmentation on the device (``augment.py``), bf16 autocast on CUDA,
optionally ``torch.compile``d. The data (a pack or HDF5 demos) lives on the device; batches are built
vectorised (``bc_forward.action_logits``). From scratch, or fine-tuning a checkpoint (``init``: its tokenizer
and norm stats are kept).

Every ``save_every`` steps ``train_state.pt`` (model, optimizer, RNG, step, schedule) and an HF-format
``checkpoint/`` are replaced atomically, so a killed run resumes, and keeps a usable checkpoint. The schedule
is a number of steps fixed before the cosine starts: given, or sized once from a wall-clock budget by timing
steps *after* warm-up (timing the first steps, which include compilation and autotuning, under-counts by
2–3×) plus one held-out evaluation and one checkpoint, amortised over their intervals; the budget also stops
the run early, saved. Held-out metrics (the last demo of each instruction):
CE, token accuracy and mean |bin error| per action dimension, in ``heldout.csv`` and ``training.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.models.checkpoint import load_openvla, save_openvla
from bench.core.models.openvla import ACTION_DIM
from bench.core.models.presets import LIBERO_SUITES, build, preset
from bench.core.models.processor import normalize_pixels
from bench.harness.train.augment import AUGMENTATIONS, augment
from bench.harness.train.bc_data import BCDataset, read_demo_frames, tokenise
from bench.harness.train.bc_forward import PromptTable, action_logits

DIMS = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")


@dataclass
class BCConfig:
    data: list[str]
    preset: str = "tiny"
    init: str | None = None  # checkpoint to fine-tune (its tokenizer and norm stats are kept)
    steps: int = 2000  # schedule length; 0: sized from budget_s
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 100
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    augment: str = "crop"
    holdout: int = 1  # demos per instruction held out for evaluation
    save_every: int = 100
    eval_every: int = 500
    log_every: int = 1
    device: str = "cpu"
    bf16: bool | None = None  # None: on for CUDA
    compile: bool = False
    budget_s: float | None = None
    size_after: int = 10  # budget sizing: untimed steps first (compilation, autotuning) …
    size_steps: int = 10  # … then this many timed steps
    threads: int = 0  # 0: torch's default
    notes: dict = field(default_factory=dict)


def lr_at(step: int, cfg: BCConfig, total: int | None) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``min_lr_frac·lr`` over the fixed schedule of ``total`` steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if total is None:  # the schedule is being sized (within warm-up unless warmup < size_after + size_steps)
        return cfg.lr
    t = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda asked for, but torch sees no CUDA device")
    if name != "cpu" and not name.startswith("cuda"):
        raise BenchError(f"--device must be cpu, cuda or auto; got {name!r}")
    return torch.device(name)


def _model_and_data(cfg: BCConfig, log: Callable[[str], None]):
    """(model, tokenizer, dataset): a fresh preset with the data's norm stats, or ``init`` with its own."""
    from bench.harness.train.pack import pack_tokenizer_dir

    frames = read_demo_frames(cfg.data, log=log)
    if cfg.init:
        model, tokenizer = load_openvla(cfg.init)
        data = tokenise(frames, tokenizer, model.cfg.n_text_vocab, stats=model.cfg.norm_stats)
        return model.train(), tokenizer, data
    model_cfg = preset(cfg.preset)
    tok_dir = pack_tokenizer_dir(cfg.data)
    if tok_dir is not None:
        from bench.core.models.tokenizer import PromptTokenizer

        tokenizer = PromptTokenizer.from_dir(tok_dir, model_cfg.bos_token_id)
    else:
        from bench.core.models.tokenizer import build_word_tokenizer
        from envs.libero import instruction_words

        tokenizer = build_word_tokenizer(instruction_words(), model_cfg.n_text_vocab, model_cfg.n_action_bins)
    size = tokenizer.tokenizer.get_vocab_size()
    if size != model_cfg.n_text_vocab:
        raise BenchError(f"the tokenizer has {size} ids; preset {cfg.preset!r} has a text vocabulary of {model_cfg.n_text_vocab}")
    data = tokenise(frames, tokenizer, model_cfg.n_text_vocab)
    model = build(dataclasses.replace(model_cfg, norm_stats=full_norm_stats(data.stats)), seed=cfg.seed)
    return model.train(), tokenizer, data


class Trainer:
    """One behaviour-cloning run; ``run()`` returns the final checkpoint directory."""

    def __init__(self, cfg: BCConfig, out: Path, log: Callable[[str], None],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if cfg.augment not in AUGMENTATIONS:
            raise BenchError(f"--augment must be one of {', '.join(AUGMENTATIONS)}; got {cfg.augment!r}")
        if cfg.steps == 0 and not cfg.budget_s:
            raise BenchError("--steps 0 sizes the schedule from --budget-s, which is missing")
        self.clock = clock  # injectable so budget sizing is testable without depending on machine load
        self.t0 = clock()
        self.cfg, self.out, self.log = cfg, out, log
        self.held_csv = out / "heldout.csv"
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        out.mkdir(parents=True, exist_ok=True)
        _repair_checkpoint_dir(out)
        model, self.tokenizer, data = _model_and_data(cfg, log)
        self.model = model.to(self.device)
        self.data: BCDataset = data.to(self.device)
        self.train_ix, self.val_ix = (ix.to(self.device) for ix in data.holdout(cfg.holdout))
        if len(self.train_ix) == 0:
            raise BenchError("no training frames left after holding out demos; use --holdout 0")
        log(f"{len(data)} frames from {data.n_demos} demos, {len(data.prompts)} instructions, suites "
            f"{sorted(data.stats)}; {len(self.train_ix)} for training, {len(self.val_ix)} held out; device {self.device}")
        self.table = PromptTable.build(self.model, data.prompts, self.device)
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        forward = lambda pixels, pidx, tokens: action_logits(self.model, pixels, self.table, pidx, tokens)  # noqa: E731
        self.forward = torch.compile(forward) if cfg.compile else forward
        self.step, self.total = 0, (cfg.steps or None)
        self.schedule: dict = {"steps": cfg.steps, "sized_from_budget": None}
        self.history: list[dict] = []
        self.train_seconds, self.stopped_by_budget = 0.0, False
        self._size_start: tuple[int, float] | None = None
        self._resume()

    # --- state -----------------------------------------------------------------------------------------
    def _resume(self) -> None:
        state_file = self.out / "train_state.pt"
        if not state_file.exists():
            return
        state = torch.load(state_file, weights_only=False, map_location=self.device)
        if state["config"] != dataclasses.asdict(self.cfg):
            self.log("note: resuming with a changed config; the saved step, schedule and weights are kept")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"].cpu())
        self.step, self.total, self.schedule = state["step"], state["total"], state["schedule"]
        if self.cfg.steps:  # a given schedule length wins (a rerun with more --steps extends the run)
            self.total, self.schedule = self.cfg.steps, {**self.schedule, "steps": self.cfg.steps}
        self.history, self.train_seconds = state["history"], state["train_seconds"]
        self.log(f"resumed at step {self.step}")

    def save(self, complete: bool) -> Path:
        """train_state.pt, checkpoint/ and training.json, each replaced atomically."""
        tmp = self.out / "train_state.tmp"
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "generator": self.gen.get_state(), "step": self.step, "total": self.total,
                    "schedule": self.schedule, "history": self.history, "train_seconds": self.train_seconds,
                    "config": dataclasses.asdict(self.cfg)}, tmp)
        tmp.replace(self.out / "train_state.pt")
        final = self.out / "checkpoint"
        new = self.out / "checkpoint.new"
        shutil.rmtree(new, ignore_errors=True)
        self.model.eval()
        save_openvla(self.model, self.tokenizer, new)
        self.model.train()
        (new / "training.json").write_text(json.dumps(self.summary(complete), indent=2) + "\n")
        if final.exists():
            final.rename(self.out / "checkpoint.old")
        new.rename(final)
        shutil.rmtree(self.out / "checkpoint.old", ignore_errors=True)
        shutil.copy(final / "training.json", self.out / "training.json")
        return final

    def summary(self, complete: bool) -> dict:
        d = self.data
        return {"config": dataclasses.asdict(self.cfg), "complete": complete, "step": self.step,
                "schedule": self.schedule, "stopped_by_budget": self.stopped_by_budget,
                "frames": {"train": len(self.train_ix), "held_out": len(self.val_ix)}, "demos": d.n_demos,
                "instructions": len(d.prompts), "suites": sorted(d.stats), "device": _device_name(self.device),
                "torch": torch.__version__, "bf16": self.bf16,
                "samples_per_s": round(self.cfg.batch_size * max(1, self.step) / max(self.train_seconds, 1e-9), 1),
                "seconds": round(self.clock() - self.t0, 1), "held_out": self.history,
                "n_parameters": sum(p.numel() for p in self.model.parameters())}

    # --- training --------------------------------------------------------------------------------------
    def logits(self, images: torch.Tensor, pidx: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.forward(normalize_pixels(images), pidx, tokens).float()

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        ix = self.train_ix[torch.randint(0, len(self.train_ix), (cfg.batch_size,), device=self.device, generator=self.gen)]
        images = augment(self.data.images[ix], cfg.augment, self.gen)
        targets = self.data.tokens[ix]
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, cfg, self.total)
        logits = self.logits(images, self.data.prompt_index[ix], targets)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return loss.detach(), (logits.argmax(-1) == targets).float().mean()

    @torch.no_grad()
    def evaluate(self, batch: int = 256) -> dict:
        """Teacher-forced held-out metrics on the evaluation's centre crop."""
        if len(self.val_ix) == 0:
            return {}
        self.model.eval()
        ce, correct, bin_err = 0.0, 0.0, torch.zeros(ACTION_DIM, device=self.device)
        for s in range(0, len(self.val_ix), batch):
            ix = self.val_ix[s: s + batch]
            t = self.data.tokens[ix]
            lg = self.logits(augment(self.data.images[ix], "none", None), self.data.prompt_index[ix], t)
            ce += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), t.reshape(-1), reduction="sum").item() / ACTION_DIM
            correct += (lg.argmax(-1) == t).float().sum().item() / ACTION_DIM
            bin_err += (lg.argmax(-1) - t).abs().float().sum(0)
        self.model.train()
        n = len(self.val_ix)
        return {"ce": round(ce / n, 4), "token_acc": round(correct / n, 4),
                **{f"bin_err_{d}": round(v, 2) for d, v in zip(DIMS, (bin_err / n).tolist(), strict=True)}}

    def run(self) -> Path:
        cfg = self.cfg
        loss_log = (self.out / "loss.csv").open("a")
        if self.step == 0:
            loss_log.write("step,loss,token_acc,lr,seconds\n")
        while self.total is None or self.step < self.total:
            if self._out_of_budget():
                self.stopped_by_budget = True
                self.log(f"budget of {cfg.budget_s:.0f} s reached at step {self.step}; stopping")
                break
            tick = self.clock()
            loss, acc = self.train_step()
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == self.total:
                loss_log.write(f"{self.step},{loss.item():.5f},{acc.item():.4f},{lr_at(self.step - 1, cfg, self.total):.3g},"
                               f"{self.clock() - self.t0:.1f}\n")
                loss_log.flush()
            self.train_seconds += self.clock() - tick  # host time; the GPU catches up at each .item()
            if self.total is None:
                self._size_schedule()
            if self.step % max(10, cfg.log_every) == 0:
                self.log(f"step {self.step}/{self.total or '?'}  loss {loss.item():.3f}  token acc {acc.item():.3f}  "
                         f"{(self.clock() - self.t0) / 60:.1f} min")
            if self.step % cfg.eval_every == 0 or self.step == self.total:
                self._record_eval()
            if self.step % cfg.save_every == 0 and self.step != self.total:
                self.save(complete=False)
        loss_log.close()
        if not self.history or self.history[-1]["step"] != self.step:
            self._record_eval()
        final = self.save(complete=not self.stopped_by_budget)
        plot_loss(self.out / "loss.csv", self.out / "loss_curve.png")
        return final

    def _record_eval(self) -> None:
        csv, ev = self.held_csv, self.evaluate()
        if not ev:
            return
        self.history.append({"step": self.step, **ev})
        new = not csv.exists()
        with csv.open("a") as f:
            if new:
                f.write(",".join(["step", *ev]) + "\n")
            f.write(",".join(str(v) for v in [self.step, *ev.values()]) + "\n")
        self.log(f"held out at step {self.step}: CE {ev['ce']:.3f}, token acc {ev['token_acc']:.3f}, |bin error| "
                 + " ".join(f"{d} {ev[f'bin_err_{d}']:.1f}" for d in DIMS))

    def _size_schedule(self) -> None:
        """Called after each step while the schedule is open: time ``size_steps`` steps after ``size_after``
        untimed ones (compilation, autotuning), then one held-out evaluation and one checkpoint, and fix the
        number of steps that fits the budget with those periodic costs amortised over their intervals."""
        if self.step < self.cfg.size_after:
            return
        _sync(self.device)
        if self._size_start is None:
            self._size_start = (self.step, self.clock())
            return
        if self.step - self._size_start[0] < self.cfg.size_steps:
            return
        per_step = (self.clock() - self._size_start[1]) / (self.step - self._size_start[0])
        tick = self.clock()
        self._record_eval()
        eval_s = self.clock() - tick
        tick = self.clock()
        self.save(complete=False)
        save_s = self.clock() - tick
        amortised = per_step + eval_s / self.cfg.eval_every + save_s / self.cfg.save_every
        left = self.cfg.budget_s - (self.clock() - self.t0)
        reserve = 0.1 * self.cfg.budget_s + eval_s + save_s  # the final evaluation, checkpoint and plot
        self.total = max(self.step + 1, self.step + int((left - reserve) / amortised))
        self.schedule = {"steps": self.total, "sized_from_budget": {
            "budget_s": self.cfg.budget_s, "ms_per_step": round(per_step * 1e3, 2),
            "eval_s": round(eval_s, 3), "checkpoint_s": round(save_s, 3), "timed_steps":
            [self._size_start[0] + 1, self.step], "at_s": round(self.clock() - self.t0, 1)}}
        self.log(f"schedule sized from the budget: {per_step * 1e3:.1f} ms/step after warm-up, evaluation "
                 f"{eval_s:.1f} s every {self.cfg.eval_every}, checkpoint {save_s:.1f} s every "
                 f"{self.cfg.save_every} → {self.total} steps")

    def _out_of_budget(self) -> bool:
        return bool(self.cfg.budget_s) and self.clock() - self.t0 > self.cfg.budget_s * 0.95


def train_policy(cfg: BCConfig, out: Path, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.perf_counter) -> Path:
    return Trainer(cfg, out, log, clock).run()


def _repair_checkpoint_dir(out: Path) -> None:
    """A kill between the two renames of ``save`` leaves only checkpoint.old: put it back."""
    if not (out / "checkpoint").exists() and (out / "checkpoint.old").exists():
        (out / "checkpoint.old").rename(out / "checkpoint")
    shutil.rmtree(out / "checkpoint.new", ignore_errors=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


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
