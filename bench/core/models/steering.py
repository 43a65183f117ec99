"""The compute-plan contract between acceleration methods and the LLM executor.

During the prefill every token row, at every layer, is one of:
- **compute**: its row runs through the layer and its K/V are written to its cache slot;
- **reuse**: its row stops running; attention reads the K/V its slot holds from the previous control
  step (same position id, so RoPE already matches);
- **drop**: gone from this layer on: neither a query nor a key (also for the decode tokens).

A method subclasses :class:`Steering`. It names the layers whose attention probabilities it needs
(``attention_layers``; the executor computes exactly those, SDPA does the rest) and edits a
:class:`PrefillState` at layer boundaries in :meth:`Steering.at_layer`. The base class is the empty
plan: the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.core.records import Field


@dataclass
class PrefillState:
    """What a method sees and edits at the boundary before layer ``layer``."""

    layer: int
    x: torch.Tensor  # [1, n, D] hidden states of the rows still computed
    slots: torch.Tensor  # [n] cache slot per row (slot i = i-th token of the prefill sequence)
    pos: torch.Tensor  # [n] RoPE position per row; also orders the causal mask
    live: torch.Tensor  # [S] bool: slots attended to as keys from this layer on
    n_prefill: int  # prefill length L (slots 0..L-1); extra slots ≥ L hold merged tokens
    n_live: int  # number of live slots (a Python int, so counting never syncs the GPU)
    attn: torch.Tensor | None = None  # [H, n_q, n_slots] probabilities of layer ``layer − 1`` if requested;
    attn_query_slots: torch.Tensor | None = None  # row i is the query at this slot; column j is slot j
    soft_mix: torch.Tensor | None = None  # [S] in [0,1]: K/V = m·fresh + (1−m)·cached (LAC training)
    can_reuse: bool = False  # the cache holds K/V of a previous control step for these slots
    plain: bool = True  # no edits yet: rows == live slots in position order (the fast causal path)
    computed_per_layer: list[torch.Tensor] = field(default_factory=list)  # slots each layer computed
    hook_seconds: float = 0.0  # host time spent in Steering.at_layer during this prefill

    def _remove(self, slots: torch.Tensor) -> None:
        """Stop computing ``slots`` (distinct, all currently computed rows), keeping the others in order.

        The kept count is known on the host (rows − slots), so the kept rows are gathered by index instead of
        by a boolean mask, whose output shape would make a GPU wait for the mask's values (a host read).
        """
        keep = ~torch.isin(self.slots, slots)
        n_keep = self.slots.shape[0] - slots.shape[0]
        if not self.slots.is_meta:
            torch._assert_async(keep.sum() == n_keep, "reuse/drop: slots must be distinct computed rows")
        rows = torch.argsort(keep.to(torch.uint8), descending=True, stable=True)[:n_keep]  # kept rows, in order
        self.x, self.slots, self.pos = self.x[:, rows], self.slots[rows], self.pos[rows]
        self.plain = False

    def next_layer(self, x: torch.Tensor, probs: torch.Tensor | None) -> PrefillState:
        """The state at the next boundary: same rows, the layer's output, its probabilities if asked."""
        return PrefillState(self.layer + 1, x, self.slots, self.pos, self.live.clone(), self.n_prefill,
                            self.n_live, probs, self.slots if probs is not None else None,
                            self.soft_mix, self.can_reuse, self.plain, self.computed_per_layer)

    def row_of(self, slot: int) -> int | torch.Tensor:
        """Row index of a slot that must still be computed (the last prompt token, say).

        A 0-d tensor once rows were edited: finding it on the device avoids a host read.
        """
        if self.plain:
            return slot
        if self.slots.is_meta:  # shapes only: the prompt's last token is the last row by position order
            return self.slots.shape[0] - 1
        match = self.slots == slot
        torch._assert_async(match.sum() == 1, f"slot {slot} must stay computed in every layer")
        return match.to(torch.uint8).argmax()

    def reuse(self, slots: torch.Tensor) -> None:
        """Stop computing these slots; their previous-step K/V stay visible as keys."""
        if not slots.numel():
            return  # an empty edit keeps the plain path: empty plans stay bit-identical to the baseline
        if not self.can_reuse:
            raise RuntimeError("reuse needs K/V from a previous control step (first step of an episode?)")
        self._remove(slots)

    def drop(self, slots: torch.Tensor) -> None:
        """Remove these slots from this layer on, as queries and as keys."""
        if not slots.numel():
            return
        self._remove(slots)
        self.live[slots] = False
        self.n_live -= int(slots.numel())

    def set_rows(self, x: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor) -> None:
        """Replace the computed rows wholesale (e.g. SparseVLM: kept + merged tokens, renumbered).

        Slots not among the new rows stop being live; new slots (merged tokens, ≥ n_prefill) become live.
        """
        self.live[self.slots] = False
        self.live[slots] = True
        self.n_live += int(slots.numel()) - int(self.slots.numel())
        self.x, self.slots, self.pos = x, slots, pos
        self.plain = False


class Steering:
    """Empty compute plan (the baseline). Methods override what they need."""

    name = "baseline"
    attention_layers: frozenset[int] = frozenset()
    causal: bool = True  # False reproduces VLA-Cache's SDPA→eager fallback (non-causal prefill)
    extra_slots: int = 0  # free cache slots a method may fill with inserted rows
    record_fields: tuple[Field, ...] = ()  # the fields step_record returns (bench/core/records.py)

    def bind(self, n_layers: int, n_visual: int, device: torch.device | str = "cpu") -> None:
        """Called once with the model's depth, visual-token count and device (where a method keeps its own
        tensors and modules); raise ValueError if they do not fit."""

    def reset_episode(self, seed: int) -> None:
        """Forget all per-episode state (previous frame, attention, RNG)."""

    def begin_step(self, frame: Any, step_index: int) -> None:
        """Called once per control step before the prefill, with the policy's preprocessed frame."""

    def at_layer(self, state: PrefillState) -> None:
        """Boundary before ``state.layer`` (0..n_layers): edit the compute/reuse/drop sets here."""

    def decode_position(self, i: int, n_prefill: int, n_live: list[int]) -> int | list[int]:
        """RoPE position of the i-th decoded token: one for all layers, or one per layer.

        ``n_live`` is each layer's number of live keys at the end of the prefill. The default keeps
        original positions (HF's ``cache_position`` = L + i), as FastV and VLA-Cache do.
        """
        return n_prefill + i

    def step_record(self) -> dict[str, Any]:
        """Per-step fields the method reports (what it chose); each declared in ``record_fields``."""
        return {}

    def step_macs(self) -> dict[str, int]:
        """MACs the method itself spent this step, by region (e.g. a selector CNN), for the full-cost view."""
        return {}
