"""Honest uncertainty for success rates: Wilson intervals, exact McNemar on paired episodes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from scipy.stats import binomtest, norm


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (n = 0 gives the uninformative [0, 1])."""
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the bound equals p exactly in real arithmetic but lands a few ulps beyond it in floats
    # (0/50 gave a lower bound of 1e-18 > 0): clamp so the interval always contains p and lies in [0, 1].
    return max(0.0, min(p, center - half)), min(1.0, max(p, center + half))


@lru_cache(maxsize=8)
def _z(confidence: float) -> float:
    return float(norm.ppf(0.5 + confidence / 2))


@dataclass(frozen=True)
class PairedComparison:
    """Two runs on identical episode keys. b: A succeeded and B failed; c: A failed and B succeeded."""

    n: int
    rate_a: float
    rate_b: float
    b: int
    c: int
    p_value: float  # exact McNemar (two-sided binomial test on the discordant pairs)
    diff: float  # rate_b − rate_a
    diff_low: float  # Wald 95 % CI of the paired difference
    diff_high: float


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of b vs c discordant pairs at p = 0.5."""
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def paired_compare(a: list[bool], b: list[bool], confidence: float = 0.95) -> PairedComparison:
    """Paired comparison of success on the same episodes (lists aligned by episode key)."""
    if len(a) != len(b):
        raise ValueError("paired comparison needs the same episodes in both runs")
    n = len(a)
    b_only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    c_only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    diff = (c_only_b - b_only_a) / n if n else 0.0
    z = float(norm.ppf(0.5 + confidence / 2))
    se = math.sqrt(max(b_only_a + c_only_b - n * diff * diff, 0.0)) / n if n else 0.0
    return PairedComparison(n=n, rate_a=sum(a) / n if n else 0.0, rate_b=sum(b) / n if n else 0.0, b=b_only_a,
                            c=c_only_b, p_value=mcnemar_exact(b_only_a, c_only_b), diff=diff,
                            diff_low=max(-1.0, diff - z * se), diff_high=min(1.0, diff + z * se))
