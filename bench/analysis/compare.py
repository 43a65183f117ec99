"""Paired comparison of two runs on identical episode keys, and the regression gate built on it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis.stats import PairedComparison, paired_compare, wilson_interval
from bench.core import records as R
from bench.core.errors import BenchError, reading
from bench.harness.store import EPISODES, MANIFEST, latest_by_key, read_episodes, read_manifest

# Spec fields two runs may differ in and still be paired episode by episode: what is being compared (the method
# and its parameters, the device and dtype it ran on) and which episodes each holds (pairing uses shared keys).
# Every other field (suite, max steps, protocol, policy and its weights, seed) must match.
MAY_DIFFER = ("method", "method_params", "protocol.device", "protocol.dtype", "protocol.compile", "tasks",
              "episodes_per_task")

MEAN_PAPER_MACS = R.summary_field(R.PAPER_PREFILL_MACS, "mean")
MEDIAN_STEP_S = R.summary_field(R.TIME_STEP_S, "median")


@dataclass
class RunEpisodes:
    label: str
    records: dict[str, dict[str, Any]]  # key → latest record
    spec: dict[str, Any]

    def metric(self, field: str) -> float:
        vals = [r[R.SUMMARY][field] for r in self.records.values() if r[R.STATUS] == "ok" and field in r[R.SUMMARY]]
        return statistics.median(vals) if vals else float("nan")

    @property
    def errors(self) -> int:
        return sum(r[R.STATUS] == "error" for r in self.records.values())


def load_run(path: Path) -> RunEpisodes:
    """A run directory, or an ``episodes.jsonl`` file (e.g. a committed reference)."""
    path = Path(path)
    run_dir = path.parent if path.name == EPISODES else path
    if not (run_dir / EPISODES).exists():
        raise BenchError(f"{path} is neither a run directory nor an {EPISODES} file")
    if not (run_dir / MANIFEST).exists():
        raise BenchError(f"{run_dir} has no {MANIFEST}: without its spec the run cannot be checked for comparability")
    with reading(run_dir / MANIFEST, "run manifest"):
        spec = dict(read_manifest(run_dir)["spec"])
    return RunEpisodes(str(path), latest_by_key(read_episodes(run_dir)), spec)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k == "protocol":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def spec_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Spec fields (outside MAY_DIFFER) whose values differ, as 'field: A vs B'."""
    fa, fb = _flatten(a), _flatten(b)
    return [f"{k}: {fa.get(k, '(absent)')!r} vs {fb.get(k, '(absent)')!r}"
            for k in sorted(set(fa) | set(fb)) if k not in MAY_DIFFER and fa.get(k) != fb.get(k)]


def ensure_comparable(a: RunEpisodes, b: RunEpisodes) -> None:
    diffs = spec_differences(a.spec, b.spec)
    if diffs:
        raise BenchError(f"{a.label} and {b.label} are not comparable: {'; '.join(diffs)} "
                         f"(only {', '.join(MAY_DIFFER)} may differ)")


def pair(a: RunEpisodes, b: RunEpisodes) -> tuple[list[str], PairedComparison]:
    ensure_comparable(a, b)
    keys = sorted(set(a.records) & set(b.records))
    if not keys:
        raise BenchError(f"{a.label} and {b.label} share no episode keys: they cannot be compared")
    return keys, paired_compare([bool(a.records[k][R.SUCCESS]) for k in keys], [bool(b.records[k][R.SUCCESS]) for k in keys])


def comparison_rows(a: RunEpisodes, b: RunEpisodes) -> list[tuple[str, str, str]]:
    _, pc = pair(a, b)

    def rate(run: RunEpisodes, p: float) -> str:
        lo, hi = wilson_interval(round(p * pc.n), pc.n)
        return f"{p:.1%} [{lo:.1%}, {hi:.1%}]"

    rows = [("episodes (shared keys)", str(pc.n), str(pc.n)),
            ("success [Wilson 95% CI]", rate(a, pc.rate_a), rate(b, pc.rate_b)),
            ("errors", str(a.errors), str(b.errors)),
            ("discordant: only A / only B", str(pc.b), str(pc.c)),
            ("B − A success [95% CI], exact McNemar p", "", f"{pc.diff:+.1%} [{pc.diff_low:+.1%}, {pc.diff_high:+.1%}], p = {pc.p_value:.3g}")]
    for field, label, scale in ((MEAN_PAPER_MACS, "paper prefill GMACs/step (median)", 1e-9),
                                (R.summary_field(R.MACS_TOTAL, "mean"), "total GMACs/step (median)", 1e-9),
                                (MEDIAN_STEP_S, "step latency ms (median)", 1e3),
                                (R.summary_field(R.TIME_PREFILL_S, "median"), "prefill latency ms (median)", 1e3)):
        va, vb = a.metric(field), b.metric(field)
        rows.append((label, f"{va * scale:.3f}", f"{vb * scale:.3f} ({vb / va:.2f}×)" if va else f"{vb * scale:.3f}"))
    return rows


@dataclass
class Verdict:
    failed: bool
    reasons: list[str]
    notes: list[str]


def check(baseline: RunEpisodes, candidate: RunEpisodes, alpha: float, max_flops_increase: float | None,
          max_latency_increase: float | None, max_errors: int, require_all_keys: bool = True) -> Verdict:
    """Fail only on a statistically significant success drop or a hard metric regression."""
    ensure_comparable(baseline, candidate)
    missing = set(baseline.records) - set(candidate.records)
    if require_all_keys and missing:
        raise BenchError(f"candidate lacks {len(missing)} of the baseline's episodes (e.g. {sorted(missing)[0]}): "
                         "run the same spec")
    _, pc = pair(baseline, candidate)
    reasons, notes = [], []
    drop = pc.rate_b < pc.rate_a
    line = (f"success {pc.rate_a:.1%} → {pc.rate_b:.1%} on {pc.n} paired episodes "
            f"(discordant {pc.b}/{pc.c}, exact McNemar p = {pc.p_value:.3g}, alpha {alpha})")
    (reasons if drop and pc.p_value < alpha else notes).append(
        line + (": significant drop" if drop and pc.p_value < alpha else ": no significant drop"))
    if candidate.errors > max_errors:
        reasons.append(f"{candidate.errors} episodes ended in errors (allowed {max_errors})")
    for limit, field, label in ((max_flops_increase, MEAN_PAPER_MACS, "paper prefill MACs"),
                                (max_latency_increase, MEDIAN_STEP_S, "median step latency")):
        if limit is None:
            continue
        va, vb = baseline.metric(field), candidate.metric(field)
        change = vb / va - 1 if va else 0.0
        (reasons if change > limit else notes).append(f"{label} {change:+.1%} (limit +{limit:.0%})")
    return Verdict(bool(reasons), reasons, notes)
