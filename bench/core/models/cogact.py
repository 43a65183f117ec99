"""CogACT: the Prismatic VLM (OpenVLA's vision stack and Llama executor) + a DiT diffusion action head.

Written from microsoft/CogACT ``vla/cogactvla.py:predict_action``: the prompt gets ``[29871, 2]`` appended —
the empty token and EOS, the *cognition token* — one prefill runs, and the cognition feature is the final-norm
hidden state of the last position (``hidden_states[0][-1][:, -1]``). The DiT then denoises a 16×7 action chunk
by DDIM (10 steps) with classifier-free guidance 1.5 (a batch of 2: the cognition feature and the learned
``uncondition``). Token methods act on the single prefill only; the cognition token is text, never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.core.flops import MacMeter
from bench.core.models.config import OpenVLAConfig
from bench.core.models.diffusion import DDIMSampler
from bench.core.models.dit import DiT, DiTConfig
from bench.core.models.llama import KVCache
from bench.core.models.openvla import OpenVLA
from bench.core.models.steering import PrefillState, Steering
from bench.core.timing import RegionTimer

NOISE_MODES = ("seeded", "unseeded")


@dataclass(frozen=True)
class CogACTHead:
    """The action head and its sampling (CogACT's inference defaults)."""

    dit: DiTConfig
    cfg_scale: float = 1.5  # > 1 turns classifier-free guidance on
    ddim_steps: int = 10
    diffusion_steps: int = 100
    cognition_token_id: int = 2  # EOS


@dataclass
class ChunkPrediction:
    """One CogACT step: the sampled chunk before un-normalisation, the prefill plan, the cognition feature."""

    normalized: np.ndarray  # [16, 7]
    prefill: PrefillState
    hidden: torch.Tensor  # [1, d] cognition feature


class ActionModel(nn.Module):
    """The reference's ``ActionModel``: holds ``net`` (its state-dict prefix) and the DDIM sampler."""

    def __init__(self, head: CogACTHead) -> None:
        super().__init__()
        self.net = DiT(head.dit)
        self.sampler = DDIMSampler(head.diffusion_steps, head.ddim_steps)


class CogACT(OpenVLA):
    """The VLM parts keep OpenVLA's names and config (``cfg`` is the VLM's); ``head`` configures the action model."""

    decode_slots = 0  # one prefill per step, no decode

    def __init__(self, cfg: OpenVLAConfig, head: CogACTHead) -> None:
        super().__init__(cfg)
        self.head = head
        self.action_model = ActionModel(head)

    def with_empty_token(self, input_ids: list[int]) -> list[int]:
        """The reference appends ``[empty, cognition]`` unconditionally."""
        return [*input_ids, self.cfg.empty_token_id, self.head.cognition_token_id]

    def sample_chunk(self, cognition: torch.Tensor, noise: torch.Tensor, meter: MacMeter | None = None,
                     draw_unused_noise: bool = False) -> torch.Tensor:
        """DDIM from ``noise`` [1, 16, 7], guided when cfg_scale > 1 → normalised chunk [1, 16, 7] (fp32)."""
        net, head = self.action_model.net, self.head
        dtype = net.x_embedder.linear.weight.dtype
        z = cognition[:, None].to(dtype)
        noise = noise.to(dtype)
        guided = head.cfg_scale > 1.0
        if guided:
            noise = torch.cat([noise, noise])
            z = torch.cat([z, net.z_embedder.uncondition[None].expand(z.shape[0], 1, -1)])

        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if meter is not None:
                net.count_macs(meter, x.shape[0])
            return net.guided_eps(x, t, z, head.cfg_scale) if guided else net(x, t, z)

        samples = self.action_model.sampler.sample(eps, noise, draw_unused_noise)
        return samples[:1].float() if guided else samples.float()

    @torch.inference_mode()
    def predict_action(
        self,
        pixel_values: torch.Tensor,
        input_ids: list[int],
        cache: KVCache,
        steering: Steering | None = None,
        meter: MacMeter | None = None,
        timer: RegionTimer | None = None,
        noise: torch.Tensor | None = None,
        draw_unused_noise: bool = False,
    ) -> ChunkPrediction:
        """Timed regions: ``vision``, ``prefill`` (the paper's latency region) and ``action_head`` (DiT × steps)."""
        timer = timer or RegionTimer(pixel_values.device)
        cognition, state, _ = self.prefill_step(pixel_values, input_ids, cache, steering, meter, timer)
        with timer.region("action_head"):
            dit = self.head.dit
            if noise is None:  # the reference: unseeded torch.randn from the global generator
                noise = torch.randn(1, dit.chunk, dit.action_dim, device=pixel_values.device)
            chunk = self.sample_chunk(cognition, noise, meter, draw_unused_noise)
            normalized = chunk[0].cpu().numpy()  # the step's one device→host read
        cache.steps += 1
        return ChunkPrediction(normalized, state, cognition)
