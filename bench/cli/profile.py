"""`bench profile`: performance mode — replay a recorded frame trace through each method at batch 1.

Accuracy runs (`bench run`) and latency runs are separate: here the same real LIBERO frames go through
every method, after warm-up, as fresh episodes; we report percentiles of the paper's region (the LLM
decoder-layer loop of the prefill) and of the end-to-end policy step, with MACs and the roofline bound.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from bench.analysis.roofline import device_for, lower_bound_s, prefill_bytes
from bench.core import records as R
from bench.core.errors import BenchError
from bench.harness.policy import StepResult
from bench.harness.registry import METHODS, POLICIES
from bench.harness.trace import TRACE_FILE, load_trace, record_trace


def percentiles(values_s: list[float]) -> dict[str, float]:
    v = 1e3 * np.asarray(values_s)
    return {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def build_policy(name: str, method: str, checkpoint: str | None, random_weights: bool, suite: str, device: str,
                 dtype: str, compile_decode: bool = False) -> Any:
    from bench.harness.openvla_policy import random_weight_policy
    from bench.harness.registry import build_method

    steering, _ = build_method(method, {})
    if random_weights:
        return random_weight_policy("tiny" if name == "tiny-openvla" else name, steering, suite, device, dtype,
                                    compile_decode)
    return POLICIES.load(name)(name, checkpoint, steering, suite, device=device, dtype=dtype,
                               compile_decode=compile_decode)


def patch_status(policy: Any, step: StepResult, layer: int = -1) -> np.ndarray:
    """Per visual patch at ``layer`` of ``step``'s prefill (the policy's latest): 0 computed, 1 reused, 2 dropped."""
    n = policy.model.cfg.vision[0].grid ** 2
    computed = step.prefill.computed_per_layer[layer].cpu()
    live = policy.cache.live[layer, 1 : 1 + n].cpu()
    status = np.where(live.numpy(), 1, 2)
    status[np.isin(np.arange(1, n + 1), computed.numpy())] = 0
    return status


def profile_method(policy: Any, frames: np.ndarray, instruction: str, warmup: int, repeat: int,
                   mask_png: Path | None = None) -> list[dict]:
    from bench.analysis.plots import token_mask_overlay

    policy.reset(instruction, 0)
    for f in frames[:warmup]:
        policy.act({"agentview_image": f})
    rows = []
    for r in range(repeat):
        policy.reset(instruction, 0)  # each replay is a fresh episode: methods start from a full step
        for i, f in enumerate(frames):
            step = policy.act({"agentview_image": f})
            rows.append(step.record)
            if mask_png is not None and r == 0 and i == len(frames) // 2:
                token_mask_overlay(step.image, patch_status(policy, step), f"{mask_png.stem}, step {i}, "
                                   "last layer", mask_png)
    return rows


def profile_command(*, methods: str, policy: str, checkpoint: str | None, random_weights: bool, trace: Path | None,
                    record: int | None, suite: str, task: int, warmup: int, repeat: int, device: str, dtype: str,
                    out: Path, console: Console, compile_decode: bool = False) -> pd.DataFrame:
    from bench.harness.spec import resolve_device

    names = [m.name for m in METHODS.entries()] if methods == "all" else methods.split(",")
    for n in names:
        METHODS.resolve(n)
    POLICIES.resolve(policy)
    device = resolve_device(device)
    if record and trace is not None:
        raise BenchError("give either --trace (replay a recorded trace) or --record N (record a new one), not both")
    if record:
        trace = record_trace(suite, task, record, out / TRACE_FILE)
        console.print(f"recorded {record} frames of {suite} task {task} → {trace}")
    if trace is None:
        raise BenchError("give --trace FILE|RUN_DIR or --record N to record a frame trace")
    frames, instruction, trace_suite = load_trace(trace)
    out.mkdir(parents=True, exist_ok=True)
    dev_name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    roof = device_for(dev_name if device == "cuda" else "cpu")
    results = []
    for name in names:
        pol = build_policy(policy, name, checkpoint, random_weights, trace_suite, device, dtype, compile_decode)
        rows = profile_method(pol, frames, instruction, warmup, repeat, out / f"token_mask_{name}.png")
        cfg = pol.model.cfg.text
        llm_params = sum(p.numel() for p in pol.model.language_model.model.layers.parameters())
        bytes_per = torch.finfo(pol.model.language_model.lm_head.weight.dtype).bits // 8
        paper = float(np.mean([r[R.PAPER_PREFILL_MACS] for r in rows]))
        n_rows = float(np.mean([np.mean(r[R.PREFILL_ROWS_PER_LAYER]) for r in rows]))
        kv = 2 * cfg.num_hidden_layers * n_rows * cfg.num_key_value_heads * cfg.head_dim * bytes_per
        bound = lower_bound_s(paper, prefill_bytes(llm_params, bytes_per, int(kv)), roof, dtype)
        pre, step = percentiles([r[R.TIME_PREFILL_S] for r in rows]), percentiles([r[R.TIME_STEP_S] for r in rows])
        results.append({
            "method": name, "steps": len(rows), **{f"prefill_{k}_ms": v for k, v in pre.items()},
            **{f"step_{k}_ms": v for k, v in step.items()},
            "overhead_p50_ms": percentiles([r[R.TIME_METHOD_OVERHEAD_S] for r in rows])["p50"],
            "paper_prefill_GMACs": paper / 1e9, "total_GMACs": float(np.mean([r[R.MACS_TOTAL] for r in rows])) / 1e9,
            "prefill_roofline_ms": 1e3 * bound, "prefill_measured_over_roofline": pre["p50"] / (1e3 * bound),
            "cache_ratio": float(np.mean([r[R.CACHE_RATIO] for r in rows])),
        })
    df = pd.DataFrame(results)
    base = df.loc[df.method == "baseline"]
    if len(base):
        df["prefill_speedup"] = float(base.prefill_p50_ms.iloc[0]) / df.prefill_p50_ms
        df["step_speedup"] = float(base.step_p50_ms.iloc[0]) / df.step_p50_ms
    context = {"device": dev_name, "roofline_device": roof.name, "dtype": dtype, "policy": policy,
               "weights": "random" if random_weights else str(checkpoint or "embedded"), "torch": torch.__version__,
               "cuda": torch.version.cuda if device == "cuda" else None, "attention": "sdpa (+ explicit softmax rows "
               "for the statistics a method requests)", "trace": str(trace), "frames": len(frames),
               "warmup_steps": warmup, "repeats": repeat, "batch_size": 1,
               "execution": "compiled decode" if compile_decode else "eager"}
    df.to_csv(out / "profile.csv", index=False)
    (out / "profile.json").write_text(json.dumps({"context": context, "results": results}, indent=2))
    _print(df, context, console)
    console.print(f"wrote {out / 'profile.csv'} and {out / 'profile.json'}")
    return df


def _print(df: pd.DataFrame, ctx: dict[str, Any], console: Console) -> None:
    console.print(" · ".join(f"{k}: {v}" for k, v in ctx.items() if v is not None), highlight=False)
    table = Table("method", "prefill p50/p90/p99 ms", "prefill mean±std", "step p50/p90/p99 ms", "step mean±std",
                  "method overhead p50", "paper GMACs", "roofline ms (meas/pred)", "speed-up prefill / step")
    for r in df.itertuples():
        speed = f"{r.prefill_speedup:.2f}× / {r.step_speedup:.2f}×" if hasattr(r, "prefill_speedup") else "—"
        table.add_row(r.method, f"{r.prefill_p50_ms:.2f} / {r.prefill_p90_ms:.2f} / {r.prefill_p99_ms:.2f}",
                      f"{r.prefill_mean_ms:.2f}±{r.prefill_std_ms:.2f}",
                      f"{r.step_p50_ms:.2f} / {r.step_p90_ms:.2f} / {r.step_p99_ms:.2f}",
                      f"{r.step_mean_ms:.2f}±{r.step_std_ms:.2f}", f"{r.overhead_p50_ms:.2f}",
                      f"{r.paper_prefill_GMACs:.3f}",
                      f"{r.prefill_roofline_ms:.3f} ({r.prefill_measured_over_roofline:.0f}×)", speed)
    console.print(table)
