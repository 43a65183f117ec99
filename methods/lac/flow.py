"""Motion input for LAC: dense optical flow between consecutive preprocessed frames.

Default: OpenCV Farnebäck on the 224×224 grayscale policy inputs (CPU, no weights). The paper uses
RAFT-small; that needs torchvision's RAFT and a local weights file, which this environment cannot load
(torchvision does not import beside the CPU torch wheel), so it is not offered here.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

FLOW_SCALE = 8.0  # pixels; flow channels are divided by this before entering the CNN


def farneback(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """[H, W, 2] float32 flow (dx, dy) from ``prev`` to ``cur`` (H×W×3 uint8)."""
    g0, g1 = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (prev, cur))
    return cv2.calcOpticalFlowFarneback(g0, g1, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                        poly_n=5, poly_sigma=1.2, flags=0)


def lac_input(cur: np.ndarray, prev: np.ndarray | None) -> torch.Tensor:
    """[1, 5, H, W]: RGB in [0, 1] and flow / FLOW_SCALE (zero on an episode's first frame)."""
    rgb = torch.from_numpy(np.ascontiguousarray(cur)).permute(2, 0, 1).float() / 255.0
    flow = np.zeros((*cur.shape[:2], 2), np.float32) if prev is None else farneback(prev, cur)
    motion = torch.from_numpy(flow).permute(2, 0, 1) / FLOW_SCALE
    return torch.cat([rgb, motion])[None]
