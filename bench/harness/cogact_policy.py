"""CogACT policies: the Prismatic adapter (``OpenVLAPolicy``) with CogACT's chunk head.

``ChunkHead`` draws the diffusion noise, un-normalises the sampled 16×7 chunk, ensembles it
(``AdaptiveEnsembler``) and converts the current action to the robot's convention:
- ``libero``: LIBERO's delta-EEF action with robosuite's gripper sign (as OpenVLA's LIBERO adapter);
- ``google_robot``: euler → axis-angle, the sticky relative gripper (repeat 10), ensemble horizon 2;
- ``widowx``: euler → axis-angle, absolute gripper ``2·(open > 0.5) − 1``, ensemble horizon 7.
Diffusion noise is seeded per episode by default; ``unseeded`` is the reference's global ``torch.randn``
(and its per-step unused draws), so runs vary as the reference's do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from bench.core.errors import BenchError
from bench.core.flops import MacMeter
from bench.core.models.checkpoint import fingerprint, load_openvla
from bench.core.models.cogact import NOISE_MODES, ActionModel, ChunkPrediction, CogACT, CogACTHead
from bench.core.models.cogact_actions import AdaptiveEnsembler, StickyGripper, unnormalize_chunk
from bench.core.models.cogact_checkpoint import cogact_fingerprint, load_cogact
from bench.core.models.dit import DIT_SIZES
from bench.core.models.llama import KVCache
from bench.core.models.presets import COGACT_PRESETS, tiny_dit
from bench.core.models.processor import OpenVLAProcessor, gripper_to_env
from bench.core.models.steering import Steering
from bench.core.timing import RegionTimer
from bench.harness.openvla_policy import DTYPES, TINY_CHECKPOINT, OpenVLAPolicy, build_random


@dataclasses.dataclass(frozen=True)
class RobotConvention:
    unnorm_key: str | None  # None: the suite's own name (LIBERO)
    ensemble_horizon: int
    gripper: str  # "robosuite" | "sticky" | "absolute"
    axis_angle: bool


# cogact_policy.py: google_robot → horizon 2, sticky 10; widowx_bridge → horizon 7; LIBERO: our choice (no reference
# adapter exists), horizon 2 as the Google robot's delta-EEF control, OpenVLA's LIBERO gripper post-processing.
ROBOTS = {
    "libero": RobotConvention(None, 2, "robosuite", False),
    "google_robot": RobotConvention("fractal20220817_data", 2, "sticky", True),
    "widowx": RobotConvention("bridge_orig", 7, "absolute", True),
}
ENSEMBLE_ALPHA = 0.1


def robot_of(suite: str) -> str:
    if suite.startswith("libero"):
        return "libero"
    if "google" in suite:
        return "google_robot"
    if "widowx" in suite or "bridge" in suite:
        return "widowx"
    raise BenchError(f"no CogACT robot convention for suite {suite!r}")


def resize_naive(frame: np.ndarray, size: int = 224) -> np.ndarray:
    """Prismatic's ``resize-naive`` image transform on the full-resolution frame (bicubic, no crop, no JPEG), as
    CogACT's SIMPLER adapter feeds it (✘ the checkpoints' resize strategy is assumed, not read)."""
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC))


def euler_to_axis_angle(rpy: np.ndarray) -> np.ndarray:
    """transforms3d ``euler2axangle(r, p, y)`` (static xyz axes) as a rotation vector (axis × angle)."""
    return Rotation.from_euler("xyz", rpy).as_rotvec()


class ChunkHead:
    def __init__(self, processor: OpenVLAProcessor, unnorm_key: str, robot: str, noise: str = "seeded",
                 weights: str = "checkpoint") -> None:
        if noise not in NOISE_MODES:
            raise BenchError(f"noise must be one of {NOISE_MODES}; got {noise!r}")
        self.stats = processor.cfg.norm_stats[unnorm_key]["action"]
        self.robot, self.convention, self.noise, self.weights = robot, ROBOTS[robot], noise, weights
        self.ensembler = AdaptiveEnsembler(self.convention.ensemble_horizon, ENSEMBLE_ALPHA)
        self.sticky = StickyGripper(10)
        self.generator: torch.Generator | None = None
        self.episode_seed = 0

    def reset(self, episode_seed: int) -> None:
        self.ensembler.reset()
        self.sticky.reset()
        self.generator, self.episode_seed = None, episode_seed

    def predict(self, model: CogACT, pixels: torch.Tensor, input_ids: list[int], cache: KVCache,
                steering: Steering, meter: MacMeter, timer: RegionTimer) -> ChunkPrediction:
        noise = None
        if self.noise == "seeded":
            if self.generator is None:
                self.generator = torch.Generator(pixels.device).manual_seed(self.episode_seed)
            dit = model.head.dit
            noise = torch.randn(1, dit.chunk, dit.action_dim, generator=self.generator, device=pixels.device)
        return model.predict_action(pixels, input_ids, cache, steering, meter, timer, noise=noise,
                                    draw_unused_noise=self.noise == "unseeded")

    def action(self, prediction: ChunkPrediction) -> np.ndarray:
        a = self.ensembler(unnormalize_chunk(prediction.normalized, self.stats))
        if self.convention.axis_angle:
            a[3:6] = euler_to_axis_angle(a[3:6])
        if self.convention.gripper == "robosuite":
            a[6] = gripper_to_env(a[6])
        elif self.convention.gripper == "sticky":
            a[6] = self.sticky(a[6])
        else:
            a[6] = 2.0 * (a[6] > 0.5) - 1.0
        return a

    def describe(self) -> dict[str, Any]:
        c = self.convention
        return {"head": "diffusion action chunk (DiT, DDIM, CFG)", "head_weights": self.weights,
                "robot": self.robot, "noise": self.noise,
                "ensemble": {"horizon": c.ensemble_horizon, "alpha": ENSEMBLE_ALPHA}, "gripper": c.gripper}


def tiny_cogact(dtype: str, device: str) -> tuple[CogACT, Any]:
    """The shipped tiny-openvla VLM (trained) + a seeded random tiny DiT: actions depend on the image, but the head
    is untrained, so success is 0 % until a trained tiny CogACT exists."""
    vlm, tokenizer = load_openvla(TINY_CHECKPOINT, DTYPES[dtype], device)
    head = CogACTHead(tiny_dit(vlm.cfg.text.hidden_size))
    with torch.device("meta"):
        model = CogACT(vlm.cfg, head)
    model.load_state_dict(vlm.state_dict(), strict=False, assign=True)
    torch.manual_seed(0)
    with torch.device(device):
        model.action_model = ActionModel(head)
    return model.eval(), tokenizer


TINY_NAMES = ("tiny-cogact", "tiny-cogact-unseeded")
TINY_HEAD = "dit-seed0"  # the tiny head's identity: its preset and init seed


def resolve_checkpoint(name: str, checkpoint: str | None) -> Path | None:
    """The run directory a policy name + --checkpoint refer to (None: the tiny preset, built from shipped weights)."""
    if checkpoint is None:
        if name not in TINY_NAMES:
            raise BenchError(f"policy {name!r} needs --checkpoint DIR (a CogACT run directory: config.json, "
                             "dataset_statistics.json, tokenizer.json, checkpoints/*.pt)")
        return None
    if not Path(checkpoint).is_dir():
        raise BenchError(f"checkpoint directory {checkpoint!r} does not exist")
    return Path(checkpoint).resolve()


def checkpoint_fingerprint(name: str, path: Path | None) -> str:
    return f"{fingerprint(TINY_CHECKPOINT)}+{TINY_HEAD}" if path is None else cogact_fingerprint(path)


def load_cogact_policy(name: str, checkpoint: str | None, steering: Steering, suite: str, device: str = "cpu",
                       dtype: str = "fp32", compiled: bool = False, noise: str = "seeded") -> OpenVLAPolicy:
    robot = robot_of(suite)
    unnorm_key = ROBOTS[robot].unnorm_key or suite
    path = resolve_checkpoint(name, checkpoint)
    if path is None:
        model, tokenizer = tiny_cogact(dtype, device)
        weights = "random (seed 0; the VLM is tiny-openvla's)"
    else:
        model, tokenizer = load_cogact(path, DTYPES[dtype], device)
        want = COGACT_PRESETS.get(name)
        if want in DIT_SIZES and (DIT_SIZES[want][:2] != (model.head.dit.hidden_size, model.head.dit.depth)):
            raise BenchError(f"{path} holds a DiT of width {model.head.dit.hidden_size} and depth "
                             f"{model.head.dit.depth}, not {name}'s {want}")
        weights = "checkpoint"

    def head(processor: OpenVLAProcessor, key: str) -> ChunkHead:
        return ChunkHead(processor, key, robot, noise, weights)

    return OpenVLAPolicy(name, path or TINY_CHECKPOINT, steering, unnorm_key, device, dtype, model=model,
                         tokenizer=tokenizer, compiled=compiled, head=head,
                         model_fingerprint=checkpoint_fingerprint(name, path),
                         image_chain=None if robot == "libero" else resize_naive)


def random_weight_policy(preset_name: str, steering: Steering, suite: str, device: str, dtype: str,
                         compiled: bool = False) -> OpenVLAPolicy:
    """A CogACT preset with random weights built on ``device`` (the VLM in ``dtype``, the DiT in fp32, as the
    reference's bf16 mode): latency work without a checkpoint, e.g. ``bench profile --policy cogact-base
    --random-weights``."""
    from bench.core.models.presets import cogact_preset, identity_norm_stats
    from bench.core.models.tokenizer import build_word_tokenizer

    vlm, head = cogact_preset(preset_name)
    vlm = dataclasses.replace(vlm, norm_stats=vlm.norm_stats or identity_norm_stats())
    model = build_random(lambda: CogACT(vlm, head), device, dtype)
    model.action_model.float()
    tokenizer = build_word_tokenizer([], vlm.n_text_vocab, vlm.n_action_bins)
    robot = robot_of(suite)

    def head_of(processor: OpenVLAProcessor, key: str) -> ChunkHead:
        return ChunkHead(processor, key, robot, "seeded", "random")

    return OpenVLAPolicy(f"{preset_name} (random weights)", None, steering, suite, device, dtype, model=model,
                         tokenizer=tokenizer, compiled=compiled, head=head_of)
