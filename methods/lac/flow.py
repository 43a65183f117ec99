"""Motion input for LAC: dense optical flow between consecutive preprocessed frames.

Farnebäck on the 224×224 grayscale policy inputs, no weights, with one of two backends:
- ``opencv``: OpenCV's ``calcOpticalFlowFarneback`` on the host (the CPU default; LAC's modules were trained on it);
- ``torch``: the same algorithm as tensor ops (``methods.lac.torch_flow``) on the policy's device, so a GPU
  step does not wait for host-side vision work (the GPU default). On LIBERO frames it differs from OpenCV by
  1e-4 px mean end-point error.
The paper uses RAFT-small; that needs torchvision's RAFT and a local weights file, which this environment cannot
load (torchvision does not import beside the CPU torch wheel), so it is not offered here.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from methods.lac import torch_flow

FLOW_SCALE = 8.0  # pixels; flow channels are divided by this before entering the CNN
FLOW_BACKENDS = ("opencv", "torch")


def farneback(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """[H, W, 2] float32 flow (dx, dy) from ``prev`` to ``cur`` (H×W×3 uint8)."""
    g0, g1 = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (prev, cur))
    return cv2.calcOpticalFlowFarneback(g0, g1, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                        poly_n=5, poly_sigma=1.2, flags=0)


def lac_input(cur: np.ndarray, prev: np.ndarray | None, backend: str = "opencv",
              device: torch.device | str = "cpu") -> torch.Tensor:
    """[1, 5, H, W] on ``device``: RGB in [0, 1] and flow / FLOW_SCALE (zero on an episode's first frame)."""
    frame = torch.from_numpy(np.ascontiguousarray(cur)).to(device)
    rgb = frame.permute(2, 0, 1).float() / 255.0
    if prev is None:
        flow = torch.zeros(*cur.shape[:2], 2, device=device)
    elif backend == "torch":
        flow = torch_flow.farneback(torch.from_numpy(np.ascontiguousarray(prev)).to(device), frame)
    else:
        flow = torch.from_numpy(farneback(prev, cur)).to(device)
    return torch.cat([rgb, flow.permute(2, 0, 1) / FLOW_SCALE])[None]
