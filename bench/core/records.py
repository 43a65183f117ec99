"""The record schema, defined once: every field of a step row and an episode record, with its unit.

A run stores one JSON row per policy step (``steps.jsonl``) and one record per episode (``episodes.jsonl``,
whose ``summary`` holds ``<step field>_mean`` / ``_median`` of the numeric step fields). Producers — the
region timer and MAC meter, the policy adapter, each method's ``step_record``, the rollout — and readers —
report, compare, plots, profile — name fields through this module, so a rename is one edit and
``tests/test_records.py`` fails on a field nobody declared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str  # a name, or a pattern with <region> for a family (time_<region>_s)
    unit: str
    doc: str

    def matches(self, key: str) -> bool:
        return re.fullmatch(re.sub(r"<\w+>", r"[a-z0-9_]+", self.name), key) is not None


def time_field(region: str) -> str:
    return f"time_{region}_s"


def macs_field(region: str) -> str:
    return f"macs_{region}"


def summary_field(step_field: str, stat: str) -> str:
    """The episode summary's name for a statistic (``mean`` or ``median``) of a numeric step field."""
    return f"{step_field}_{stat}"


# ---- step fields --------------------------------------------------------------------------------------------
STEP, POLICY_S, ENV_S, ACTION = "step", "policy_s", "env_s", "action"
TIME_STEP_S, TIME_PREFILL_S = time_field("step"), time_field("prefill")
TIME_METHOD_BEGIN_S, TIME_METHOD_HOOKS_S, TIME_METHOD_OVERHEAD_S = (
    "time_method_begin_s", "time_method_hooks_s", "time_method_overhead_s")
MACS_TOTAL, FLOPS_TOTAL, PAPER_PREFILL_MACS = "macs_total", "flops_total", "paper_prefill_macs"
VISUAL_COMPUTED_PER_LAYER, VISUAL_REUSED_PER_LAYER, VISUAL_DROPPED_PER_LAYER = (
    "visual_computed_per_layer", "visual_reused_per_layer", "visual_dropped_per_layer")
MERGED_PER_LAYER, PREFILL_ROWS_PER_LAYER = "merged_per_layer", "prefill_rows_per_layer"
VISUAL_COMPUTED_MEAN, VISUAL_REUSED_MEAN, VISUAL_DROPPED_MEAN = (
    "visual_computed_mean", "visual_reused_mean", "visual_dropped_mean")
CACHE_RATIO = "cache_ratio"

STEP_FIELDS: tuple[Field, ...] = (
    Field(STEP, "index", "policy step within the episode (wait steps not counted)"),
    Field(POLICY_S, "s", "wall time of policy.act, as the rollout saw it"),
    Field(ENV_S, "s", "wall time of the env step"),
    Field(ACTION, "env units", "the env action, rounded to 1e-6"),
    Field(time_field("<region>"), "s", "time in a region of the policy step: step (all of it), preprocess, vision, "
          "prefill (the decoder-layer loop: the paper's latency region), decode (OpenVLA) or action_head (CogACT: "
          "DiT × DDIM steps), postprocess (tokens or chunk → env action, CogACT's ensemble); CUDA events on a GPU"),
    Field(TIME_METHOD_BEGIN_S, "s", "host time of the method's begin_step (selectors, flow, static patches)"),
    Field(TIME_METHOD_HOOKS_S, "s", "host time in the method's per-layer hooks during the prefill"),
    Field(TIME_METHOD_OVERHEAD_S, "s", "begin + hooks: what the method itself costs"),
    Field(macs_field("<region>"), "MACs", "multiply-accumulates by region: vision, projector, prefill, decode, "
          "lm_head, method_attn_stats, and a method's own (e.g. lac_selector)"),
    Field(MACS_TOTAL, "MACs", "sum over the regions"),
    Field(FLOPS_TOTAL, "FLOPs", "2 × macs_total"),
    Field(PAPER_PREFILL_MACS, "MACs", "the LAC paper's convention: 4nd² + 2n²d + 3ndm per LLM prefill layer"),
    Field(VISUAL_COMPUTED_PER_LAYER, "tokens", "visual tokens computed, per layer"),
    Field(VISUAL_REUSED_PER_LAYER, "tokens", "visual tokens live but not computed (K/V reused), per layer"),
    Field(VISUAL_DROPPED_PER_LAYER, "tokens", "visual tokens not live, per layer"),
    Field(MERGED_PER_LAYER, "tokens", "merged rows (SparseVLM recycling), per layer"),
    Field(PREFILL_ROWS_PER_LAYER, "rows", "all rows the layer computed"),
    Field(VISUAL_COMPUTED_MEAN, "tokens", "mean over layers"),
    Field(VISUAL_REUSED_MEAN, "tokens", "mean over layers"),
    Field(VISUAL_DROPPED_MEAN, "tokens", "mean over layers"),
    Field(CACHE_RATIO, "fraction", "reused visual tokens / (layers × visual tokens)"),
)

# ---- episode fields (``bench.harness.rollout.EpisodeRecord``) ----------------------------------------------------------
KEY, SUCCESS, STEPS, STATUS, SUMMARY = "key", "success", "steps", "status", "summary"
TASK_ID, INIT_STATE_INDEX = "task_id", "init_state_index"

EPISODE_FIELDS: tuple[Field, ...] = (
    Field(KEY, "task:init", "episode key: task id and init-state index"),
    Field(TASK_ID, "id", "task of the suite"),
    Field("task_name", "text", "the task's name"),
    Field(INIT_STATE_INDEX, "index", "official init state (SIMPLER: the episode of the evaluation matrix)"),
    Field(SUCCESS, "bool", "first done of a policy step (SIMPLER: the last step's success)"),
    Field(STEPS, "steps", "policy steps taken"),
    Field("first_success_step", "steps", "steps at success, or null"),
    Field(STATUS, "ok|error", "an error ends the episode with its message"),
    Field("message", "text", "the error, if any"),
    Field("wall_time_s", "s", "whole episode, reset and wait steps included"),
    Field("env_time_s", "s", "env.step during policy steps"),
    Field("policy_time_s", "s", "policy.act"),
    Field("harness_time_s", "s", "the rest of the policy-step loop: the harness's own overhead"),
    Field("actions_sha1", "hex", "SHA-1 of the float64 actions: equal hashes, identical episodes"),
    Field("started_at", "unix s", "start time"),
    Field("finished_at", "unix s", "end time"),
    Field(SUMMARY, "dict", "<step field>_mean and _median of every numeric step field"),
)


def undeclared(keys: set[str], fields: tuple[Field, ...]) -> set[str]:
    """The keys no field (name or pattern) declares."""
    return {k for k in keys if not any(f.matches(k) for f in fields)}
