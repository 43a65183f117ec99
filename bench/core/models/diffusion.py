"""DDIM sampling as CogACT runs it: 100-step ``squaredcos_cap_v2`` schedule respaced to ``ddimN``, η = 0, ε-prediction,
no clipping of x̂₀ (``create_diffusion(..., sigma_small=True, learn_sigma=False)`` + ``ddim_sample_loop``).

Written from the reference's ``gaussian_diffusion.py``/``respace.py`` (OpenAI's improved-diffusion lineage):
the schedule is built in float64, each coefficient is read as float32 (``_extract_into_tensor``), and the
model sees the *original* timestep of each respaced step (``_WrappedModel``: ddim10 → 90, 80, …, 0).
Reference quirk kept as an option: every DDIM step draws ``randn_like(x)`` from the global RNG although η = 0
multiplies it by zero (``draw_unused_noise``), so seeded runs consume the global stream exactly as the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def squaredcos_cap_v2(n: int, max_beta: float = 0.999) -> np.ndarray:
    """``betas_for_alpha_bar`` with ᾱ(t) = cos²((t + 0.008)/1.008 · π/2)."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)])


def ddim_timesteps(diffusion_steps: int, ddim_steps: int) -> list[int]:
    """``space_timesteps(T, "ddimN")``: the first integer stride giving exactly N steps (ddim1 → [50])."""
    if ddim_steps == 1:
        return [50]
    for stride in range(1, diffusion_steps):
        if len(range(0, diffusion_steps, stride)) == ddim_steps:
            return list(range(0, diffusion_steps, stride))
    raise ValueError(f"cannot take exactly {ddim_steps} DDIM steps from {diffusion_steps} with an integer stride")


EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, original timesteps [N]) → ε̂


class DDIMSampler:
    def __init__(self, diffusion_steps: int = 100, ddim_steps: int = 10) -> None:
        base = np.cumprod(1.0 - squaredcos_cap_v2(diffusion_steps))
        self.timesteps = ddim_timesteps(diffusion_steps, ddim_steps)
        # SpacedDiffusion: new betas from the kept ᾱ's, then GaussianDiffusion's ᾱ recomputed from them.
        kept = base[self.timesteps]
        betas = 1 - kept / np.concatenate([[1.0], kept[:-1]])
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        f32 = lambda a: torch.from_numpy(np.asarray(a)).float()  # noqa: E731 - the reference's float32 read
        self.sqrt_recip = f32(np.sqrt(1.0 / alphas_cumprod))
        self.sqrt_recipm1 = f32(np.sqrt(1.0 / alphas_cumprod - 1))
        self.alpha_bar_prev = f32(prev)
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def coefficients(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three coefficient tables on ``device``, copied there once (not 3 copies per DDIM step)."""
        if device not in self._on_device:
            self._on_device[device] = tuple(t.to(device) for t in (self.sqrt_recip, self.sqrt_recipm1,
                                                                    self.alpha_bar_prev))
        return self._on_device[device]

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def step(self, x: torch.Tensor, i: int, eps: torch.Tensor) -> torch.Tensor:
        """x_{t_i} → x_{t_{i-1}} with η = 0 (ε re-derived from x̂₀, as the reference does)."""
        recip, recipm1, prev = (t[i] for t in self.coefficients(x.device))
        x0 = recip * x - recipm1 * eps
        eps = (recip * x - x0) / recipm1
        return x0 * torch.sqrt(prev) + torch.sqrt(1 - prev) * eps

    def sample(self, eps_fn: EpsFn, noise: torch.Tensor, draw_unused_noise: bool = False) -> torch.Tensor:
        """Run all steps from ``noise``; ``eps_fn`` gets the original-schedule timestep of each step."""
        x = noise
        for i in reversed(range(self.steps)):
            t = torch.full((x.shape[0],), self.timesteps[i], dtype=torch.long, device=x.device)
            x = self.step(x, i, eps_fn(x, t))
            if draw_unused_noise:
                torch.randn_like(x)
        return x
