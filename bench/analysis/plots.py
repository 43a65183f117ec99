"""Pictures of runs (matplotlib, Agg): per-suite success, MAC breakdown, cache ratio over an episode,
and a token-mask overlay (which patches a method recomputed, reused or dropped on a frame)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.core import records as R

REGIONS = ("vision", "projector", "prefill", "decode", "lm_head", "action_head", "method_attn_stats", "method_lac_cnn")


def per_suite_bars(summary: pd.DataFrame, path: Path) -> None:
    pivot = summary.pivot_table(index="suite", columns="method", values="success_rate", aggfunc="max")
    lo = summary.pivot_table(index="suite", columns="method", values="ci95_low", aggfunc="max")
    hi = summary.pivot_table(index="suite", columns="method", values="ci95_high", aggfunc="max")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    width = 0.8 / max(1, len(pivot.columns))
    x = np.arange(len(pivot.index))
    for i, method in enumerate(pivot.columns):
        y = 100 * pivot[method].to_numpy()
        err = [y - 100 * lo[method].to_numpy(), 100 * hi[method].to_numpy() - y]
        ax.bar(x + i * width, y, width, yerr=err, capsize=3, label=method)
    ax.set_xticks(x + width * (len(pivot.columns) - 1) / 2, pivot.index)
    ax.set_ylabel("success rate (%), Wilson 95% CI")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def mac_breakdown(step_means: pd.DataFrame, path: Path) -> None:
    """Stacked bars of MACs per step by region (rows: methods; columns: macs_<region>)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    bottom = np.zeros(len(step_means))
    for region in REGIONS:
        col = R.macs_field(region)
        if col in step_means:
            vals = step_means[col].fillna(0).to_numpy() / 1e9
            ax.bar(step_means.index, vals, bottom=bottom, label=region)
            bottom += vals
    ax.set_ylabel("G MACs per policy step (FLOPs = 2×)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cache_ratio_over_episode(series: dict[str, pd.DataFrame], path: Path) -> None:
    """Per-step cache ratio and visual tokens computed (mean over layers) for one episode per method."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 5), dpi=120, sharex=True)
    for label, df in series.items():
        a1.plot(df[R.STEP], df[R.CACHE_RATIO], label=label)
        a2.plot(df[R.STEP], df[R.VISUAL_COMPUTED_MEAN], label=label)
    a1.set_ylabel("cache ratio (reused share)")
    a2.set_ylabel("visual tokens computed\n(mean over layers)")
    a2.set_xlabel("policy step")
    a1.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def token_mask_overlay(frame: np.ndarray, status: np.ndarray, title: str, path: Path) -> None:
    """frame: 224×224×3 policy input; status: 256 values, 0 computed, 1 reused, 2 dropped (16×16 grid)."""
    g = int(np.sqrt(status.size))
    colors = np.array([[0, 0, 0, 0], [0.1, 0.4, 1.0, 0.45], [1.0, 0.15, 0.1, 0.55]])
    overlay = colors[status.reshape(g, g)]
    fig, ax = plt.subplots(figsize=(4.2, 4.6), dpi=120)
    ax.imshow(frame)
    ax.imshow(overlay, extent=(0, frame.shape[1], frame.shape[0], 0), interpolation="nearest")
    counts = np.bincount(status, minlength=3)
    ax.set_title(f"{title}\ncomputed {counts[0]} · reused {counts[1]} (blue) · dropped {counts[2]} (red)", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
