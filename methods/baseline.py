"""Baseline: full compute — every token through every layer (the empty compute plan)."""

from __future__ import annotations

from bench.core.models.steering import Steering


class Baseline(Steering):
    name = "baseline"
