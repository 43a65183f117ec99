"""The record schema (bench/core/records.py) declares every field a step row and an episode record carry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.core import records as R
from bench.harness.openvla_policy import load_openvla_policy
from bench.harness.registry import METHODS, build_method
from bench.harness.rollout import EpisodeRecord, rollout


class FrameTask:
    """A stand-in simulator that replays recorded LIBERO frames and never succeeds."""

    task_id, name, instruction, n_init_states = 0, "replay", "put the black bowl on the plate", 1

    def __init__(self, frames: np.ndarray) -> None:
        self.frames, self.t = frames, 0

    def reset(self, init_index: int) -> dict[str, np.ndarray]:
        self.t = 0
        return {"agentview_image": self.frames[0]}

    def start(self, init_index: int | None, seed: int = 0) -> dict[str, np.ndarray]:
        return self.reset(init_index or 0)  # no settle steps

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        self.t += 1
        return {"agentview_image": self.frames[self.t % len(self.frames)]}, False

    def close(self) -> None:
        pass


def test_field_patterns_match_their_family_only():
    region = next(f for f in R.STEP_FIELDS if f.name == R.time_field("<region>"))
    assert region.matches(R.TIME_PREFILL_S) and not region.matches("time_prefill") and not region.matches(R.MACS_TOTAL)
    assert R.undeclared({R.macs_field("lac_selector"), "no_such_field"}, R.STEP_FIELDS) == {"no_such_field"}


def test_episode_record_fields_are_the_declared_ones():
    assert [f.name for f in dataclasses.fields(EpisodeRecord)] == [f.name for f in R.EPISODE_FIELDS]


@pytest.mark.parametrize("method", [e.name for e in METHODS.entries()])
def test_every_step_field_of_every_method_is_declared(method, frames):
    steering, _ = build_method(method, {})
    policy = load_openvla_policy("tiny-openvla", None, steering, "libero_object")
    rows: list[dict] = []
    record = rollout(FrameTask(frames), 0, policy, max_steps=3,
                     episode_seed=0, on_step=rows.append)
    assert record.status == "ok", record.message
    keys = {k for row in rows for k in row}
    assert not R.undeclared(keys, R.STEP_FIELDS + steering.record_fields), f"{method}: undeclared step fields"
    summary_of = {R.summary_field(k, s) for k in keys for s in ("mean", "median")}
    assert set(record.summary) <= summary_of
