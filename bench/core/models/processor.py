"""OpenVLA's processor: everything between the world and the model, both ways, in one place.

- image: upright camera frame → TF-exact JPEG round trip → lanczos3 to 224 → [0.9-area centre crop] →
  pixel values (DINOv2- and SigLIP-normalised, stacked to 6 channels);
- prompt: instruction → ``In: What action should the robot take to …?\\nOut:`` → ids with a leading BOS;
- actions: 7 tokens → 256-bin centres → un-normalised with the suite's q01/q99 → robosuite's gripper sign;
  and back (env actions → normalised → tokens) for training labels.

Evaluation (``bench/harness/openvla_policy.py``), behaviour cloning (``bench/harness/train/``) and LAC's training use it alike.
The simulator's camera convention (LIBERO renders upside down) is the env's business: ``envs/libero.py:upright``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from bench.core.models.config import OpenVLAConfig
from bench.core.models.image_chain import center_crop, jpeg_round_trip, resize_lanczos3

DINO_MEAN, DINO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGE_SIZE = 224


def openvla_prompt(instruction: str) -> str:
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


def resized_image(upright: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """The evaluation chain up to the resize (what packs store; the crop comes after, or as augmentation)."""
    return resize_lanczos3(jpeg_round_trip(upright), size)


def model_image(upright: np.ndarray, crop: bool = True) -> np.ndarray:
    """Upright camera frame (H×W×3 uint8) → the policy's 224×224 uint8 input (OpenVLA's evaluation chain)."""
    img = resized_image(upright)
    return center_crop(img) if crop else img


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 → [B, 6, H, W] fp32: the DINOv2-normalised then the SigLIP-normalised image."""
    x = images.permute(0, 3, 1, 2).float() / 255.0

    def norm(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
        return (x - torch.tensor(mean, device=x.device)[:, None, None]) / torch.tensor(std, device=x.device)[:, None, None]

    return torch.cat([norm(DINO_MEAN, DINO_STD), norm(SIGLIP_MEAN, SIGLIP_STD)], dim=1)


def gripper_to_env(g: float) -> float:
    """Model gripper in [0,1] (1 = open) → robosuite (−1 = open): normalize+binarize, then invert."""
    return -float(np.sign(2.0 * g - 1.0))


def env_to_model_gripper(a: np.ndarray) -> np.ndarray:
    """Inverse of ``gripper_to_env``: robosuite −1 (open) … +1 (close) → 1 (open) … 0 (close)."""
    return (1.0 - np.clip(a, -1, 1)) / 2.0


def normalize_actions(actions: np.ndarray, stats: dict) -> np.ndarray:
    """[N, 7] actions (model gripper) → the arm dims in [-1, 1] by the suite's q01/q99; the gripper as it is."""
    q01, q99 = np.asarray(stats["action"]["q01"]), np.asarray(stats["action"]["q99"])
    out = actions.astype(np.float64).copy()
    out[:, :6] = np.clip(2 * (out[:, :6] - q01[:6]) / np.maximum(q99[:6] - q01[:6], 1e-8) - 1, -1, 1)
    return out


def action_tokens(normalized: np.ndarray, n_text_vocab: int, n_bins: int = 256) -> np.ndarray:
    """OpenVLA's ActionTokenizer: digitize [-1, 1] into 256 uniform bins; token = n_text_vocab − bin."""
    bins = np.linspace(-1, 1, n_bins)
    return n_text_vocab - np.digitize(np.clip(normalized, -1, 1), bins)


class Encoder(Protocol):
    """A prompt tokenizer (``bench/core/models/tokenizer.py:PromptTokenizer``): text → ids with a leading BOS."""

    def encode(self, text: str) -> list[int]: ...


class OpenVLAProcessor:
    """One checkpoint's processing: its tokenizer, bins, norm stats, and whether evaluation centre-crops."""

    def __init__(self, cfg: OpenVLAConfig, tokenizer: Encoder, center_crop: bool = True) -> None:
        self.cfg, self.tokenizer, self.center_crop = cfg, tokenizer, center_crop
        bins = np.linspace(-1, 1, cfg.n_action_bins)
        self.bin_centers = (bins[:-1] + bins[1:]) / 2.0

    # image → model
    def image(self, upright: np.ndarray) -> np.ndarray:
        return model_image(upright, self.center_crop)

    @staticmethod
    def pixel_values(image: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """224×224×3 uint8 → [1, 6, 224, 224] on ``like``'s device and dtype (resize-naive is a no-op at 224)."""
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(like.device)[None]
        return normalize_pixels(pixels).to(like.dtype)

    # prompt → model
    def prompt_ids(self, instruction: str) -> list[int]:
        return self.tokenizer.encode(openvla_prompt(instruction))

    # model → action
    def tokens_to_normalized(self, tokens: list[int]) -> np.ndarray:
        """Token t → bin index clip(n_text_vocab − t − 1, 0, 254) → bin center in [-1, 1]."""
        d = self.cfg.n_text_vocab - np.asarray(tokens)
        return self.bin_centers[np.clip(d - 1, 0, self.bin_centers.shape[0] - 1)]

    def unnormalize(self, normalized: np.ndarray, unnorm_key: str) -> np.ndarray:
        stats = self.cfg.norm_stats[unnorm_key]["action"]
        q01, q99 = np.asarray(stats["q01"]), np.asarray(stats["q99"])
        mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
        return np.where(mask, 0.5 * (normalized + 1) * (q99 - q01) + q01, normalized)

    def action(self, tokens: list[int], unnorm_key: str) -> np.ndarray:
        """7 action tokens → the env action (un-normalised arm, robosuite gripper sign)."""
        action = self.unnormalize(self.tokens_to_normalized(tokens), unnorm_key)
        action[-1] = gripper_to_env(action[-1])
        return action

    # action → model (training labels)
    def tokens_of_env_actions(self, actions: np.ndarray, stats: dict) -> np.ndarray:
        """[N, 7] env actions → [N, 7] action tokens under the suite's ``stats``."""
        model_actions = actions.astype(np.float64).copy()
        model_actions[:, 6] = env_to_model_gripper(model_actions[:, 6])
        return action_tokens(normalize_actions(model_actions, stats), self.cfg.n_text_vocab)
