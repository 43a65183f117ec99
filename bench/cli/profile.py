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

from bench.analysis.roofline import Device, ModelBytes, device_for, region_bounds_s, regions_of
from bench.core import records as R
from bench.core.errors import BenchError
from bench.core.models.llama import ATTENTION_IMPLEMENTATIONS
from bench.harness.policy import StepResult
from bench.harness.registry import METHODS, POLICIES
from bench.harness.trace import TRACE_FILE, load_trace, record_trace


def timing_columns(rows: list[dict]) -> dict[str, float]:
    """p50/p90/p99/mean/std (ms) of each timed region: the paper's prefill and the end-to-end step first."""
    out = {}
    vision, prefill, head = regions_of(rows[0])
    for region in (prefill, "step", vision, head):
        out.update({f"{region}_{k}_ms": v for k, v in percentiles([r[R.time_field(region)] for r in rows]).items()})
    return out


def roofline_columns(rows: list[dict], sizes: ModelBytes, roof: Device, dtype: str) -> dict[str, float]:
    """Per region (vision, prefill, decode or action_head, step): the median step's lower bound (ms) and
    measured p50 / bound."""
    bounds = [region_bounds_s(r, sizes, roof, dtype) for r in rows]
    out = {}
    for region in (*regions_of(rows[0]), "step"):
        bound_ms = 1e3 * float(np.median([b[region] for b in bounds]))
        measured = float(np.median([r[R.time_field(region)] for r in rows])) * 1e3
        out[f"{region}_roofline_ms"] = bound_ms
        out[f"{region}_measured_over_roofline"] = measured / bound_ms if bound_ms else float("nan")
    return out


def percentiles(values_s: list[float]) -> dict[str, float]:
    v = 1e3 * np.asarray(values_s)
    return {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def build_policy(name: str, method: str, checkpoint: str | None, random_weights: bool, suite: str, device: str,
                 dtype: str, compiled: bool = False) -> Any:
    from bench.harness.openvla_policy import random_weight_policy
    from bench.harness.registry import build_method

    steering, _ = build_method(method, {})
    if random_weights and (name.startswith("cogact-") or name == "tiny-cogact"):
        from bench.harness import cogact_policy

        return cogact_policy.random_weight_policy(name, steering, suite, device, dtype, compiled)
    if random_weights:
        return random_weight_policy("tiny" if name == "tiny-openvla" else name, steering, suite, device, dtype,
                                    compiled)
    return POLICIES.load(name)(name, checkpoint, steering, suite, device=device, dtype=dtype,
                               compiled=compiled)


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


def host_reads_per_step(policy: Any, frames: np.ndarray, instruction: str) -> dict[str, float]:
    """Median device→host reads per step by who asked (method / model / harness), over a fresh episode's
    steps after the first (where methods act). An eager pass of its own: counting slows the step, and the
    compiled decode step and prefill layer step are pure tensor functions with no reads by construction."""
    from bench.core.host_reads import count_host_reads

    lm = policy.model.language_model
    compiled = lm.compiled_decode_step, lm.compiled_layer_step
    lm.compiled_decode_step = lm.compiled_layer_step = None
    per_step = []
    try:
        policy.reset(instruction, 0)
        for f in frames:
            with count_host_reads() as reads:
                policy.act({"agentview_image": f})
            per_step.append(reads.by_where())
    finally:
        lm.compiled_decode_step, lm.compiled_layer_step = compiled
    later = per_step[1:] or per_step
    return {where: float(np.median([s.get(where, 0) for s in later])) for where in ("method", "model", "harness")}


def profile_command(*, methods: str, policy: str, checkpoint: str | None, random_weights: bool, trace: Path | None,
                    record: int | None, suite: str, task: int, warmup: int, repeat: int, device: str, dtype: str,
                    out: Path, console: Console, compiled: bool = False,
                    attention: str = "sdpa") -> pd.DataFrame:
    from bench.harness.spec import resolve_device

    names = [m.name for m in METHODS.entries()] if methods == "all" else methods.split(",")
    for n in names:
        METHODS.resolve(n)
    POLICIES.resolve(policy)
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise BenchError(f"--attention must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}; got {attention!r}")
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
        pol = build_policy(policy, name, checkpoint, random_weights, trace_suite, device, dtype, compiled)
        pol.model.language_model.set_attention(attention)
        rows = profile_method(pol, frames, instruction, warmup, repeat, out / f"token_mask_{name}.png")
        results.append({"method": name, "steps": len(rows), **timing_columns(rows),
                        **roofline_columns(rows, ModelBytes.of(pol.model), roof, dtype),
                        "overhead_p50_ms": percentiles([r[R.TIME_METHOD_OVERHEAD_S] for r in rows])["p50"],
                        "paper_prefill_GMACs": float(np.mean([r[R.PAPER_PREFILL_MACS] for r in rows])) / 1e9,
                        "total_GMACs": float(np.mean([r[R.MACS_TOTAL] for r in rows])) / 1e9,
                        "cache_ratio": float(np.mean([r[R.CACHE_RATIO] for r in rows])),
                        **{f"host_reads_{k}": v for k, v in host_reads_per_step(pol, frames[:4], instruction).items()}})
    df = pd.DataFrame(results)
    base = df.loc[df.method == "baseline"]
    if len(base):
        df["prefill_speedup"] = float(base.prefill_p50_ms.iloc[0]) / df.prefill_p50_ms
        df["step_speedup"] = float(base.step_p50_ms.iloc[0]) / df.step_p50_ms
        df["prefill_time_ratio"] = 1 / df.prefill_speedup
        df["paper_macs_ratio"] = df.paper_prefill_GMACs / float(base.paper_prefill_GMACs.iloc[0])
    context = {"device": dev_name, "roofline_device": roof.name, "dtype": dtype, "policy": policy,
               "weights": "random" if random_weights else str(checkpoint or "embedded"), "torch": torch.__version__,
               "cuda": torch.version.cuda if device == "cuda" else None, "attention": f"{attention} (+ explicit softmax rows "
               "for the statistics a method requests)", "trace": str(trace), "frames": len(frames),
               "warmup_steps": warmup, "repeats": repeat, "batch_size": 1,
               "execution": pol.execution if names else "eager"}
    df.to_csv(out / "profile.csv", index=False)
    (out / "profile.json").write_text(json.dumps({"context": context, "results": df.to_dict("records")}, indent=2))
    _print(df, context, console)
    console.print(f"wrote {out / 'profile.csv'} and {out / 'profile.json'}")
    return df


def _print(df: pd.DataFrame, ctx: dict[str, Any], console: Console) -> None:
    """Two tables: the timing conventions side by side, then where the time goes against the roofline."""
    console.print(" · ".join(f"{k}: {v}" for k, v in ctx.items() if v is not None), highlight=False)
    has_base = "prefill_speedup" in df
    table = Table("method", "prefill p50/p90/p99 ms\n(paper: LLM layers)", "step p50/p90/p99 ms\n(end to end)",
                  "speed-up\nprefill / step", "paper GMACs\n(ratio)", "method\noverhead ms",
                  "host reads/step\nmethod / model", title="timing conventions")
    for r in df.itertuples():
        table.add_row(r.method, f"{r.prefill_p50_ms:.2f} / {r.prefill_p90_ms:.2f} / {r.prefill_p99_ms:.2f}",
                      f"{r.step_p50_ms:.2f} / {r.step_p90_ms:.2f} / {r.step_p99_ms:.2f}",
                      f"{r.prefill_speedup:.2f}× / {r.step_speedup:.2f}×" if has_base else "—",
                      f"{r.paper_prefill_GMACs:.3f}" + (f" ({r.paper_macs_ratio:.2f})" if has_base else ""),
                      f"{r.overhead_p50_ms:.2f}", f"{r.host_reads_method:.0f} / {r.host_reads_model:.0f}")
    console.print(table)
    regions = (*(g for g in ("vision", "prefill", "decode", "action_head") if f"{g}_roofline_ms" in df), "step")
    table = Table("method", *(f"{region}\np50 / bound ms (×)" for region in regions),
                  title="roofline by region (bound = max(FLOPs / peak, bytes / bandwidth))")
    for r in df.itertuples():
        d = r._asdict()
        table.add_row(r.method, *(f"{d[f'{g}_p50_ms']:.2f} / {d[f'{g}_roofline_ms']:.3f} "
                                  f"({d[f'{g}_measured_over_roofline']:.0f}×)" for g in regions))
    console.print(table)
