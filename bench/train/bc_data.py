"""Behaviour-cloning data: LIBERO-layout demos → (224 px image, prompt ids, 7 action tokens) samples.

Images go through the evaluation chain up to the resize (180° rotation, JPEG round trip, lanczos3 to 224);
the 0.9-area crop is a training-time augmentation (random position) whose centred version the policy applies
at evaluation, as OpenVLA does. Actions: the gripper maps from robosuite (−1 open, +1 close) to OpenVLA's
[0, 1] (1 = open), the arm dims are normalised with per-suite q01/q99 (stored as the checkpoint's
``norm_stats``) and tokenised into 256 bins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from bench.demos.hdf5 import demo_files, load_demos
from bench.errors import BenchError, reading
from bench.models.tokenizer import openvla_prompt
from bench.train.bc_forward import action_tokens
from envs.preprocessing import CROP_AREA, jpeg_round_trip, resize_lanczos3, rotate_180


def env_to_model_gripper(a: np.ndarray) -> np.ndarray:
    """Inverse of ``policies.gripper_to_env``: robosuite −1 (open) … +1 (close) → 1 (open) … 0 (close)."""
    return (1.0 - np.clip(a, -1, 1)) / 2.0


def suite_of(path: Path) -> str:
    with reading(path, "LIBERO-layout demo file"), h5py.File(path, "r") as f:
        args = json.loads(f["data"].attrs.get("env_args", "{}"))
    return args.get("suite") or path.parent.name


def norm_stats(actions: np.ndarray) -> dict:
    """OpenVLA-style statistics of one suite's actions (q01/q99 used for normalisation, gripper unmasked)."""
    return {"action": {"q01": np.quantile(actions, 0.01, axis=0).tolist(), "q99": np.quantile(actions, 0.99, axis=0).tolist(),
                       "mean": actions.mean(0).tolist(), "std": actions.std(0).tolist(),
                       "min": actions.min(0).tolist(), "max": actions.max(0).tolist(), "mask": [True] * 6 + [False]},
            "num_transitions": len(actions)}


def normalize(actions: np.ndarray, stats: dict) -> np.ndarray:
    q01, q99 = np.asarray(stats["action"]["q01"]), np.asarray(stats["action"]["q99"])
    out = actions.copy()
    out[:, :6] = np.clip(2 * (actions[:, :6] - q01[:6]) / np.maximum(q99[:6] - q01[:6], 1e-8) - 1, -1, 1)
    return out


@dataclass
class BCDataset:
    images: torch.Tensor  # [N, 224, 224, 3] uint8
    tokens: torch.Tensor  # [N, 7] action token ids
    prompt_index: torch.Tensor  # [N] into prompts
    prompts: list[list[int]]
    stats: dict[str, dict]  # per suite
    n_demos: int

    def __len__(self) -> int:
        return len(self.tokens)


def build_dataset(data: list[str], tokenizer, n_text_vocab: int, size: int = 224,
                  log: Callable[[str], None] = print) -> BCDataset:
    files = [f for root in data for f in demo_files(root)]
    if not files:
        raise BenchError(f"no .hdf5 demo files under {', '.join(data)}")
    per_suite: dict[str, list] = {}
    for path in files:
        demos = per_suite.setdefault(suite_of(path), [])
        for demo in load_demos(path):
            actions = demo.actions.astype(np.float64).copy()
            actions[:, 6] = env_to_model_gripper(actions[:, 6])
            frames = np.stack([resize_lanczos3(jpeg_round_trip(rotate_180(f)), size) for f in demo.agentview])
            demos.append((demo.instruction, frames, actions))
        log(f"loaded {path.name}")
    stats = {s: norm_stats(np.concatenate([a for _, _, a in demos])) for s, demos in per_suite.items()}
    prompts: dict[str, int] = {}
    images, tokens, index = [], [], []
    for suite, demos in per_suite.items():
        for instruction, frames, actions in demos:
            p = prompts.setdefault(instruction, len(prompts))
            images.append(torch.from_numpy(frames))
            tokens.append(torch.from_numpy(action_tokens(normalize(actions, stats[suite]), n_text_vocab)))
            index.append(torch.full((len(frames),), p))
    prompt_ids = [tokenizer.encode(openvla_prompt(text)) for text in prompts]
    n_demos = sum(len(d) for d in per_suite.values())
    return BCDataset(torch.cat(images), torch.cat(tokens).long(), torch.cat(index), prompt_ids, stats, n_demos)


def random_crop(images: torch.Tensor, generator: torch.Generator, area: float = CROP_AREA) -> torch.Tensor:
    """Per-sample random square crop of ``area`` of the image, resized back (bilinear): OpenVLA's augmentation."""
    B, H, W, _ = images.shape
    side = round(np.sqrt(area) * H)
    x = images.permute(0, 3, 1, 2).float()
    offs = torch.randint(0, H - side + 1, (B, 2), generator=generator)
    crops = torch.stack([x[b, :, i: i + side, j: j + side] for b, (i, j) in enumerate(offs.tolist())])
    out = F.interpolate(crops, size=(H, W), mode="bilinear", align_corners=False, antialias=False)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
