"""CogACT's action post-processing: chunk un-normalisation, the adaptive action ensemble, the sticky gripper.

Written from microsoft/CogACT ``vla/cogactvla.py:predict_action`` and ``sim_cogact/{adaptive_ensemble,cogact_policy}.py``.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def unnormalize_chunk(normalized: np.ndarray, stats: dict) -> np.ndarray:
    """[16, 7] sampled actions → clip to [−1, 1], gripper thresholded to {0, 1} (1 = open), masked dims mapped
    ``0.5(a+1)(q99−q01)+q01``; unmasked dims (the gripper) stay as they are."""
    a = np.clip(np.asarray(normalized, dtype=np.float64), -1, 1)
    a[:, 6] = np.where(a[:, 6] < 0.5, 0, 1)
    q01, q99 = np.asarray(stats["q01"]), np.asarray(stats["q99"])
    mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
    return np.where(mask, 0.5 * (a + 1) * (q99 - q01) + q01, a)


class AdaptiveEnsembler:
    """``AdaptiveEnsembler(horizon, alpha)``: the current step's action is a weighted mean of what each of the last
    ``horizon`` chunks predicted for it, weights ∝ exp(α · cos(prediction, newest prediction))."""

    def __init__(self, horizon: int, alpha: float) -> None:
        self.horizon, self.alpha = horizon, alpha
        self.history: deque[np.ndarray] = deque(maxlen=horizon)

    def reset(self) -> None:
        self.history.clear()

    def weights(self, predictions: np.ndarray) -> np.ndarray:
        ref = predictions[-1]
        cos = predictions @ ref / (np.linalg.norm(predictions, axis=1) * np.linalg.norm(ref) + 1e-7)
        w = np.exp(self.alpha * cos)
        return w / w.sum()

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """``chunk`` [T, 7] (un-normalised) → the ensembled current action [7]."""
        self.history.append(chunk)
        n = len(self.history)
        predictions = np.stack([c[n - 1 - j] for j, c in enumerate(self.history)])  # oldest chunk's step n−1 … newest's 0
        return (self.weights(predictions)[:, None] * predictions).sum(0)


class StickyGripper:
    """Google-robot gripper: relative command ``prev_open − cur_open``; once |rel| > 0.5 it is repeated
    ``repeat`` steps. ``prev`` updates only when the sticky action triggers (the reference's "bug fix")."""

    def __init__(self, repeat: int = 10) -> None:
        self.repeat = repeat
        self.reset()

    def reset(self) -> None:
        self.on, self.count, self.action, self.prev = False, 0, 0.0, None

    def __call__(self, open_gripper: float) -> float:
        if self.prev is None:
            rel, self.prev = 0.0, open_gripper
        else:
            rel = self.prev - open_gripper
        if abs(rel) > 0.5 and not self.on:
            self.on, self.action, self.prev = True, rel, open_gripper
        if self.on:
            self.count += 1
            rel = self.action
        if self.count == self.repeat:
            self.on, self.count, self.action = False, 0, 0.0
        return float(rel)
