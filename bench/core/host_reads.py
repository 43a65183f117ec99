"""Count device→host reads: the points where a GPU step would have to wait for the device.

On a GPU, every value Python reads from a tensor (``.item()``, ``int(t)``, ``.tolist()``, ``.numpy()``) and
every op whose output *shape* depends on tensor values (``nonzero``, boolean-mask indexing, ``unique``,
``masked_select``) blocks the host until the queued kernels have run, so the step becomes launch-bound.
The counter sees them on any device, CPU included, so a test can pin how many a method's hot path has:

- Python-level reads (``item``, ``tolist``, ``numpy`` — which ``np.asarray(t)`` calls — and ``int``/``float``/
  ``bool``/``index`` conversions) are wrapped for the duration, because on the CPU, and under inference
  mode, they read memory without dispatching an op the mode could see;
- ops are seen by a ``TorchDispatchMode``: data-dependent shapes, copies to the host, and any scalar read
  that did not come through a wrapped method (from inside another op, say).

Each read is attributed to the innermost project frame that caused it: ``method`` (``methods/``), ``model``
(``bench/core/models/``) or ``harness`` (anything else), so a report can say whose hot path syncs.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_ROOT = str(Path(__file__).resolve().parents[2])  # the project root (bench/, methods/, envs/ below it)
_HERE = str(Path(__file__).resolve())

READ_OPS = {  # op → what it reads
    aten._local_scalar_dense.default: "item",  # .item(), int(t), float(t), bool(t)
    aten.nonzero.default: "nonzero",
    aten.masked_select.default: "masked_select",
    aten._unique2.default: "unique",
    aten.unique_consecutive.default: "unique",
    aten.unique_dim.default: "unique",
}
PYTHON_READS = {"item": "item", "tolist": "tolist", "numpy": "numpy", "__int__": "item", "__float__": "item",
                "__bool__": "item", "__index__": "item"}
BOOL_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}  # x[mask], x[mask] = v


def _where() -> str:
    """``method`` / ``model`` / ``harness``: who, in the project, asked for the read."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_ROOT) and name != _HERE:
            rel = name[len(_ROOT) + 1 :]
            if rel.startswith("methods/"):
                return "method"
            if rel.startswith("bench/core/models/"):
                return "model"
            if not rel.startswith((".venv", "tests/")):
                return "harness"
        frame = frame.f_back
    return "harness"


class HostReads(TorchDispatchMode):
    """Counts device→host reads by (where, kind) while active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.in_python_read = False  # a wrapped method is reading: its dispatched ops are already counted

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = READ_OPS.get(func)
        if kind is None and func in BOOL_INDEX_OPS:
            indices = args[1] if len(args) > 1 else ()
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                kind = "bool_index"
        if kind is None and func is aten.repeat_interleave.Tensor and (kwargs or {}).get("output_size") is None:
            kind = "repeat_interleave"  # tensor repeats without a given output size: the size is read back
        if kind is None and func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst_cpu = (args[0].device.type == "cpu") if func is aten.copy_.default else (
                (kwargs or {}).get("device") == torch.device("cpu"))
            if isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst_cpu:
                kind = "to_cpu"
        if kind is not None and not self.in_python_read:
            self.counts[(_where(), kind)] += 1
        return func(*args, **(kwargs or {}))

    def by_where(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (where, _), n in self.counts.items():
            out[where] += n
        return dict(out)


@contextmanager
def count_host_reads() -> Iterator[HostReads]:
    """Count the device→host reads of the enclosed code (see the module docstring)."""
    mode = HostReads()
    originals: dict[str, Any] = {name: getattr(torch.Tensor, name) for name in PYTHON_READS}

    def wrap(name: str) -> Any:
        original = originals[name]

        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if mode.in_python_read:  # e.g. __index__ calling item
                return original(self, *args, **kwargs)
            mode.counts[(_where(), PYTHON_READS[name])] += 1
            mode.in_python_read = True
            try:
                return original(self, *args, **kwargs)
            finally:
                mode.in_python_read = False

        return read

    for name in originals:
        setattr(torch.Tensor, name, wrap(name))
    try:
        with mode:
            yield mode
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
