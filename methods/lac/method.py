"""LAC at inference — the compute plan each control step:

  1. V_t = [RGB_t; flow(t−1 → t)] (the first step of an episode is a full pass);
  2. s = Selector(V_t) ∈ [0,1]^256 (high = recompute); r = R[argmax Predictor(V_t)] (no noise);
  3. cache the k = round(r·256) lowest-score visual tokens: their K/V are reused from the previous step,
     from layer 0 on (positions preserved; active queries attend to all keys);
  4. stochastic recovery: with probability p_recover, a random `recover_fraction` of the cached tokens is
     recomputed instead (seeded per episode).
Variants: fixed ratio without the predictor (`fixed_ratio`), no recovery (`p_recover=0`), modules trained
without Stage I (`weights=no-stage1`) or without our ratio fit (`weights=stage2`: the paper's two stages), and
a language-guided selector (`motion=language`: the previous step's layer-15 text→vision attention replaces the
flow channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from bench.core.models.steering import PrefillState, Steering
from bench.core.records import Field
from methods.common import ATTN_LAYER, IMAGE_START, text_to_vision
from methods.lac.flow import FLOW_BACKENDS, lac_input
from methods.lac.nets import CANDIDATE_RATIOS, LACNet

ASSETS = Path(__file__).resolve().parents[2] / "bench" / "assets" / "lac-tiny"
WEIGHTS = {"full": "lac.safetensors", "stage2": "lac_stage2.safetensors", "no-stage1": "lac_no_stage1.safetensors",
           "language": "lac_language.safetensors"}


@dataclass
class LACConfig:
    weights: str = "full"  # full | stage2 (before the ratio fit) | no-stage1 | language | a .safetensors path
    motion: str = "flow"  # flow | language
    fixed_ratio: float = -1.0  # ≥ 0: no predictor, always cache this share
    p_recover: float = 0.1
    recover_fraction: float = 0.5
    start_layer: int = 0
    n_visual: int = 256
    flow: str = "auto"  # opencv (host) | torch (the policy's device) | auto: torch on CUDA, opencv on the CPU

    def __post_init__(self) -> None:
        if self.motion not in ("flow", "language"):
            raise ValueError(f"LAC motion must be flow|language; got {self.motion!r}")
        if self.flow not in ("auto", *FLOW_BACKENDS):
            raise ValueError(f"LAC flow must be auto|{'|'.join(FLOW_BACKENDS)}; got {self.flow!r}")

    def weights_path(self) -> Path:
        return ASSETS / WEIGHTS[self.weights] if self.weights in WEIGHTS else Path(self.weights)


def language_input(cur: np.ndarray, relevance: torch.Tensor | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """[1, 5, H, W]: RGB and the previous step's text→vision attention map (min-max, 16×16 upsampled) twice."""
    rgb = torch.from_numpy(np.ascontiguousarray(cur)).to(device).permute(2, 0, 1).float() / 255.0
    if relevance is None:
        rel = torch.zeros(1, *cur.shape[:2], device=device)
    else:
        r = relevance.float().to(device)
        r = (r - r.min()) / (r.max() - r.min() + 1e-8)
        g = int(r.numel() ** 0.5)
        rel = torch.nn.functional.interpolate(r.view(1, 1, g, g), size=cur.shape[:2], mode="nearest")[0]
    return torch.cat([rgb, rel, rel])[None]


def recovered_tokens(k: int, rng: np.random.Generator, p: float, fraction: float) -> np.ndarray:
    """Stochastic recovery: with probability p, indices of int(fraction·k) of the k cached tokens to recompute."""
    if k == 0 or rng.random() >= p:
        return np.empty(0, dtype=np.int64)
    return rng.choice(k, size=int(fraction * k), replace=False)


def load_net(path: Path) -> LACNet:
    if not path.exists():
        raise ValueError(f"LAC modules not found at {path}: train them with `bench train lac`")
    net = LACNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


class LAC(Steering):
    name = "lac"
    Config = LACConfig

    def __init__(self, config: LACConfig | None = None) -> None:
        self.config = config or LACConfig()
        self.net = load_net(self.config.weights_path())
        self.attention_layers = frozenset({ATTN_LAYER}) if self.config.motion == "language" else frozenset()
        self.device, self.flow = torch.device("cpu"), self.config.flow if self.config.flow != "auto" else "opencv"
        self.reset_episode(0)

    def bind(self, n_layers: int, n_visual: int, device: torch.device | str = "cpu") -> None:
        """Selector, predictor and (with the torch backend) the flow run where the policy runs."""
        self.device = torch.device(device)
        self.net.to(self.device)
        cfg = self.config
        self.flow = cfg.flow if cfg.flow != "auto" else ("torch" if self.device.type == "cuda" else "opencv")

    def reset_episode(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.prev_frame: np.ndarray | None = None
        self.relevance: torch.Tensor | None = None
        self.cached = torch.empty(0, dtype=torch.long, device=self.device)
        self.ratio, self.recovered, self.ran_net = 0.0, 0, False

    def begin_step(self, frame: np.ndarray, step_index: int) -> None:
        cfg = self.config
        self.cached, self.ratio, self.recovered = torch.empty(0, dtype=torch.long, device=self.device), 0.0, 0
        self.ran_net = self.prev_frame is not None
        if self.prev_frame is not None:
            x = (lac_input(frame, self.prev_frame, self.flow, self.device) if cfg.motion == "flow"
                 else language_input(frame, self.relevance, self.device))
            with torch.no_grad():
                scores, logits = self.net(x)
            # the ratio sizes the cached set: the step's one device→host read
            self.ratio = cfg.fixed_ratio if cfg.fixed_ratio >= 0 else CANDIDATE_RATIOS[int(logits.argmax())]
            k = round(self.ratio * cfg.n_visual)
            cached = scores[0].argsort()[:k]
            recover = recovered_tokens(k, self.rng, cfg.p_recover, cfg.recover_fraction)
            self.recovered = len(recover)
            cached = cached[torch.from_numpy(np.setdiff1d(np.arange(k), recover)).to(self.device)]
            self.cached = cached.sort().values + IMAGE_START
        self.prev_frame = frame

    def at_layer(self, state: PrefillState) -> None:
        if state.layer == self.config.start_layer and self.cached.numel() and state.can_reuse:
            state.reuse(self.cached)
        if state.attn is not None and state.layer - 1 == ATTN_LAYER:
            self.relevance = text_to_vision(state.attn, state.attn_query_slots, self.config.n_visual, 35,
                                            state.n_prefill)

    def step_macs(self) -> dict[str, int]:
        """The selector/predictor CNN ran this step (flow is classical CV: timed, not counted)."""
        return {"method_lac_cnn": self.net.macs()} if self.ran_net else {}

    record_fields = (Field("lac_ratio", "fraction", "the predicted cache ratio (a candidate)"),
                     Field("lac_cached", "tokens", "visual tokens cached this step"),
                     Field("lac_recovered", "tokens", "cached tokens recomputed by random recovery"))

    def step_record(self) -> dict[str, float]:
        return {"lac_ratio": self.ratio, "lac_cached": int(self.cached.numel()), "lac_recovered": self.recovered}
