"""Prismatic-family policy adapter: LIBERO observation → OpenVLA image chain → model (+ method) → env action.

The model's output becomes an env action through a *head*: OpenVLA's 7 greedy tokens (``TokenHead``, here) or
CogACT's sampled action chunk (``bench/harness/cogact_policy.py:ChunkHead``). Everything else — preprocessing,
the method's steering, timing, MACs, token accounting — is one code path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.core import records as R
from bench.core.errors import BenchError
from bench.core.flops import MacMeter
from bench.core.models.checkpoint import fingerprint, load_openvla
from bench.core.models.llama import KVCache
from bench.core.models.openvla import ActionPrediction, OpenVLA, visual_token_accounting
from bench.core.models.processor import OpenVLAProcessor
from bench.core.models.steering import Steering
from bench.core.models.tokenizer import PromptTokenizer
from bench.core.timing import RegionTimer
from bench.harness.policy import StepResult
from envs.suite import camera_frame

TINY_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "tiny-openvla"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Head(Protocol):
    """Turns the model's prediction into the env action (and keeps whatever state that needs per episode)."""

    def reset(self, episode_seed: int) -> None: ...

    def predict(self, model: OpenVLA, pixels: torch.Tensor, input_ids: list[int], cache: KVCache,
                steering: Steering, meter: MacMeter, timer: RegionTimer) -> Any: ...

    def action(self, prediction: Any) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class TokenHead:
    """OpenVLA: 7 greedy action tokens → bin centres → un-normalised → robosuite gripper sign."""

    def __init__(self, processor: OpenVLAProcessor, unnorm_key: str) -> None:
        self.processor, self.unnorm_key = processor, unnorm_key

    def reset(self, episode_seed: int) -> None:
        pass

    def predict(self, model: OpenVLA, pixels: torch.Tensor, input_ids: list[int], cache: KVCache,
                steering: Steering, meter: MacMeter, timer: RegionTimer) -> ActionPrediction:
        return model.predict_action(pixels, input_ids, cache, steering, meter, timer)

    def action(self, prediction: ActionPrediction) -> np.ndarray:
        return self.processor.action(prediction.tokens, self.unnorm_key)

    def describe(self) -> dict[str, Any]:
        return {"head": "action tokens (greedy)"}


class OpenVLAPolicy:
    def __init__(self, name: str, checkpoint: Path | None, steering: Steering, unnorm_key: str,
                 device: str = "cpu", dtype: str = "fp32", center_crop: bool = True,
                 model: OpenVLA | None = None, tokenizer: PromptTokenizer | None = None,
                 compiled: bool = False, head: Callable[[OpenVLAProcessor, str], Head] = TokenHead,
                 model_fingerprint: str | None = None,
                 image_chain: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Load ``checkpoint`` — or wrap a given ``model`` (random weights, or a CogACT built by its loader).

        ``compiled``: run the decode step through ``torch.compile`` (``LlamaExecutor.compiled``).
        ``head``: builds the prediction → action head from the processor and the resolved un-norm key.
        ``model_fingerprint``: the identity of a given ``model`` (default: the OpenVLA checkpoint's, or random).
        ``image_chain``: upright camera frame → the 224² model image (default: OpenVLA's LIBERO chain).
        """
        self.name = name
        self.checkpoint = Path(checkpoint) if checkpoint else None
        if model is None:
            self.model, self.tokenizer = load_openvla(self.checkpoint, DTYPES[dtype], device)
        else:
            self.model, self.tokenizer = model, tokenizer
        self.steering = steering
        try:
            steering.bind(self.model.cfg.text.num_hidden_layers, self.model.cfg.vision[0].grid ** 2, device)
        except ValueError as exc:
            raise BenchError(str(exc)) from None
        self.device, self.dtype, self.center_crop = device, dtype, center_crop
        self.execution = "compiled (decode step, prefill layers)" if compiled else "eager"
        if compiled:
            self.model.language_model.compile_decode()
            self.model.language_model.compile_prefill()
        self.processor = OpenVLAProcessor(self.model.cfg, self.tokenizer, center_crop)
        self.image_chain = image_chain or self.processor.image
        stats = self.model.cfg.norm_stats
        key = unnorm_key if unnorm_key in stats else f"{unnorm_key}_no_noops"
        if key not in stats:
            raise BenchError(f"checkpoint {checkpoint} has no norm_stats for {unnorm_key!r}; it has {sorted(stats)}")
        self.unnorm_key = key
        self.head = head(self.processor, key)
        self._fingerprint = model_fingerprint or (fingerprint(self.checkpoint) if self.checkpoint else "random-weights")

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": str(self.checkpoint or "random weights"),
                "fingerprint": self._fingerprint,
                "device": self.device, "dtype": self.dtype, "unnorm_key": self.unnorm_key,
                "center_crop": self.center_crop, "execution": self.execution, "attention": self.model.language_model.attention + ("" if self.steering.causal else "-noncausal"),
                "n_parameters": sum(p.numel() for p in self.model.parameters()), **self.head.describe()}

    def reset(self, instruction: str, episode_seed: int) -> None:
        self.input_ids = self.processor.prompt_ids(instruction)
        n_prefill = len(self.model.with_empty_token(self.input_ids)) + self.model.cfg.vision[0].grid ** 2
        self.cache = self._episode_cache(n_prefill)
        self.steering.reset_episode(episode_seed)
        self.head.reset(episode_seed)
        self.step_index = 0

    def _episode_cache(self, n_prefill: int) -> KVCache:
        """The previous episode's cache cleared when the size matches (its tensors keep their addresses, which
        the compiled decode's CUDA graphs rely on), else a new one."""
        cache = getattr(self, "cache", None)
        if cache is not None and cache.capacity == self.model.cache_capacity(n_prefill, self.steering):
            cache.clear()
            return cache
        return self.model.new_cache(n_prefill, self.steering)

    def act(self, obs: dict[str, np.ndarray]) -> StepResult:
        timer, meter = RegionTimer(self.device), MacMeter()
        with timer.region("step"):
            with timer.region("preprocess"):
                image = self.image_chain(camera_frame(obs))
                pixels = self.processor.pixel_values(image, like=self.model.projector.fc1.weight)
            t0 = time.perf_counter()
            self.steering.begin_step(image, self.step_index)
            method_s = time.perf_counter() - t0
            prediction = self.head.predict(self.model, pixels, self.input_ids, self.cache, self.steering, meter, timer)
            with timer.region("postprocess"):  # tokens or chunk → env action (CogACT: + ensemble, gripper)
                action = self.head.action(prediction)
        self.step_index += 1
        for region, macs in self.steering.step_macs().items():
            meter.add(region, macs)
        n_visual = self.model.cfg.vision[0].grid ** 2
        tokens_used = visual_token_accounting(n_visual, self.cache.n_prefill, prediction.prefill, self.cache)
        hooks_s = prediction.prefill.hook_seconds
        record = {**timer.report(), **meter.report(), R.TIME_METHOD_BEGIN_S: method_s,
                  R.TIME_METHOD_HOOKS_S: hooks_s, R.TIME_METHOD_OVERHEAD_S: method_s + hooks_s, **tokens_used,
                  **self.steering.step_record()}
        return StepResult(action, record, tokens=getattr(prediction, "tokens", None), image=image,
                          prefill=prediction.prefill)


def resolve_checkpoint(name: str, checkpoint: str | None) -> Path:
    """The checkpoint directory a policy name + --checkpoint refer to (the tiny one is shipped)."""
    if checkpoint is None:
        if name != "tiny-openvla":
            raise BenchError(f"policy {name!r} needs --checkpoint DIR (an HF-format OpenVLA checkpoint directory)")
        return TINY_CHECKPOINT
    if not Path(checkpoint).is_dir():
        raise BenchError(f"checkpoint directory {checkpoint!r} does not exist")
    return Path(checkpoint).resolve()


def checkpoint_fingerprint(name: str, path: Path | None) -> str:
    """The run-hash identity of ``resolve_checkpoint``'s answer, read without loading weights."""
    return fingerprint(path)


def build_random(factory: Callable[[], torch.nn.Module], device: str, dtype: str) -> torch.nn.Module:
    """``factory()`` with seed-0 random weights, built directly on ``device`` in ``dtype`` (no fp32 detour)."""
    default = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(DTYPES[dtype])
        with torch.device(device):
            return factory().eval()
    finally:
        torch.set_default_dtype(default)


def random_weight_policy(preset_name: str, steering: Steering, suite: str, device: str, dtype: str,
                         compiled: bool = False) -> OpenVLAPolicy:
    """A preset with random weights, built directly on ``device`` in ``dtype`` (latency work without a checkpoint)."""
    import dataclasses

    from bench.core.models.presets import identity_norm_stats, preset
    from bench.core.models.tokenizer import build_word_tokenizer

    cfg = preset(preset_name)
    cfg = dataclasses.replace(cfg, norm_stats=cfg.norm_stats or identity_norm_stats())
    model = build_random(lambda: OpenVLA(cfg), device, dtype)
    tokenizer = build_word_tokenizer([], cfg.n_text_vocab, cfg.n_action_bins)
    if cfg.empty_token_id >= cfg.n_text_vocab - cfg.n_action_bins:
        raise BenchError(f"preset {preset_name!r}: empty token id collides with action tokens")
    return OpenVLAPolicy(f"{preset_name} (random weights)", None, steering, suite, device, dtype, model=model,
                         tokenizer=tokenizer, compiled=compiled)


def load_openvla_policy(name: str, checkpoint: str | None, steering: Steering, suite: str,
                        device: str = "cpu", dtype: str = "fp32", compiled: bool = False) -> OpenVLAPolicy:
    return OpenVLAPolicy(name, resolve_checkpoint(name, checkpoint), steering, suite, device, dtype,
                         compiled=compiled)
