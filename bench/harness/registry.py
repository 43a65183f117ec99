"""Lazy registries: names map to 'module:attribute' strings so `bench ls` imports neither torch nor MuJoCo."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import BenchError, unknown_name
from envs.libero import MAX_STEPS as LIBERO_MAX_STEPS


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute"
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name → lazily imported object, with aliases and did-you-mean errors.

    ``bind_defaults``: ``load`` returns the object with the entry's defaults bound as keyword arguments
    (policy variants); otherwise the defaults are the caller's to apply (methods type them via their Config).
    """

    def __init__(self, kind: str, bind_defaults: bool = False) -> None:
        self.kind = kind
        self.bind_defaults = bind_defaults
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, target: str, summary: str, aliases: tuple[str, ...] = (), **defaults: Any) -> None:
        self._entries[name] = Entry(name, target, summary, dict(defaults))
        for alias in aliases:
            self._aliases[alias] = name

    def resolve(self, name: str) -> Entry:
        """Return the entry for a name or alias; raise a did-you-mean BenchError otherwise."""
        canonical = self._aliases.get(name, name)
        if canonical not in self._entries:
            raise unknown_name(self.kind, name, [*self._entries, *self._aliases])
        return self._entries[canonical]

    def load(self, name: str) -> Any:
        entry = self.resolve(name)
        module, _, attr = entry.target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        return functools.partial(obj, **entry.defaults) if self.bind_defaults and entry.defaults else obj

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def aliases_of(self, name: str) -> list[str]:
        return [a for a, n in self._aliases.items() if n == name]


METHODS = Registry("method")
SUITES = Registry("suite")
POLICIES = Registry("policy", bind_defaults=True)

METHODS.add("baseline", "methods.baseline:Baseline", "full compute: every token, every layer (empty compute plan)")
METHODS.add("fastv", "methods.fastv:FastV", "FastV: drop visual tokens at layer k by last-token attention (k=2, ratio=0.5)")
METHODS.add("fastv-k3", "methods.fastv:FastV", "FastV, OpenVLA reference setting (k=3, ratio=0.5)", k=3)
METHODS.add("fastv-mean", "methods.fastv:FastV", "FastV variant: all-query mean score (the paper's text)", score="mean")
METHODS.add("sparsevlm", "methods.sparsevlm:SparseVLM", "SparseVLM v1.5: rater-guided pruning at 2/6/15 + recycling")
METHODS.add("vla-cache", "methods.vla_cache:VLACache", "VLA-Cache: reuse static tokens' K/V (position-prefix quirk)")
METHODS.add("vla-cache-importance", "methods.vla_cache:VLACache", "VLA-Cache variant: reuse least-attended first",
            order="importance")
METHODS.add("vla-cache-noncausal", "methods.vla_cache:VLACache",
            "VLA-Cache as the reference ran: non-causal prefill (SDPA→eager fallback)", causal=False)
METHODS.add("lac", "methods.lac.method:LAC", "LAC: learned selector (RGB+flow CNN) + cache-ratio predictor + recovery")
METHODS.add("lac-selector-only", "methods.lac.method:LAC", "LAC ablation: selector with a fixed 40% cache ratio, no recovery",
            fixed_ratio=0.4, p_recover=0.0)
METHODS.add("lac-no-recovery", "methods.lac.method:LAC", "LAC ablation: no stochastic recovery", p_recover=0.0)
METHODS.add("lac-no-stage1", "methods.lac.method:LAC", "LAC ablation: modules trained by Stage II only",
            weights="no-stage1")
METHODS.add("lac-no-ratio-fit", "methods.lac.method:LAC",
            "LAC as the paper trains it: Stage I + II only, without our exact-expectation ratio fit", weights="stage2")
METHODS.add("lac-language", "methods.lac.method:LAC", "LAC ablation: language-guided selector instead of flow",
            weights="language", motion="language")

for _name, _steps in LIBERO_MAX_STEPS.items():
    SUITES.add(
        _name,
        "envs.libero:LiberoSuite",
        f"LIBERO {_name.split('_', 1)[1]} (OpenVLA protocol, {_steps} policy steps)",
        aliases=("libero_long",) if _name == "libero_10" else (),
    )

for _name, _what in (("simpler_google_vm", "Visual Matching"), ("simpler_google_va", "Variant Aggregation")):
    SUITES.add(_name, "envs.simpler:SimplerSuite",
               f"SIMPLER Google robot, {_what} (4 tasks, the reference scripts' matrix; needs simpler_env, not on PyPI)")

POLICIES.add(
    "tiny-openvla",
    "bench.harness.openvla_policy:load_openvla_policy",
    "embedded tiny OpenVLA-architecture policy, behaviour-cloned on libero_object (card: bench/assets/tiny-openvla)",
    aliases=("tiny",),
)
POLICIES.add(
    "openvla-7b",
    "bench.harness.openvla_policy:load_openvla_policy",
    "OpenVLA-7B; needs --checkpoint DIR with an HF-format OpenVLA checkpoint",
)
POLICIES.add(
    "tiny-cogact",
    "bench.harness.cogact_policy:load_cogact_policy",
    "tiny CogACT: the tiny-openvla VLM + a seeded random tiny DiT head (untrained head: 0 % success)",
)
POLICIES.add(
    "tiny-cogact-unseeded",
    "bench.harness.cogact_policy:load_cogact_policy",
    "tiny CogACT with the reference's unseeded diffusion noise (runs vary)",
    noise="unseeded",
)
for _size in ("small", "base", "large"):
    POLICIES.add(
        f"cogact-{_size}",
        "bench.harness.cogact_policy:load_cogact_policy",
        f"CogACT-{_size.capitalize()} (DiT-{_size[0].upper()}); needs --checkpoint DIR, a CogACT run directory",
    )


def policy_identity(name: str, checkpoint: str | None) -> tuple[Any, str]:
    """The checkpoint a policy name + --checkpoint refer to and its fingerprint, without loading weights
    (the policy's module answers: ``resolve_checkpoint`` and ``checkpoint_fingerprint``)."""
    entry = POLICIES.resolve(name)
    module = importlib.import_module(entry.target.partition(":")[0])
    path = module.resolve_checkpoint(entry.name, checkpoint)
    return path, module.checkpoint_fingerprint(entry.name, path)


def build_method(name: str, params: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """Instantiate a method; ``params`` (strings from --set) are typed by the method's Config dataclass.

    A registered variant's defaults apply first, then --set values.
    """
    entry = METHODS.resolve(name)
    cls = METHODS.load(name)
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if params:
            raise BenchError(f"method {name!r} takes no parameters; got {', '.join(params)}")
        return cls(), {}
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    typed: dict[str, Any] = dict(entry.defaults)
    for key, text in params.items():
        if key not in fields:
            raise BenchError(f"method {name!r} has no parameter {key!r}; it has {', '.join(fields)}")
        default = getattr(config_cls(), key)
        try:
            typed[key] = type(default)(text) if not isinstance(default, bool) else text.lower() in ("1", "true", "yes")
        except ValueError:
            raise BenchError(f"--set {key}={text}: expected {type(default).__name__}") from None
    try:
        config = config_cls(**typed)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    return cls(config), dataclasses.asdict(config)


@dataclass(frozen=True)
class PolicyRecipe:
    """Everything a process needs to build the same policy + method (sent to Ray workers)."""

    policy: str
    checkpoint: str | None
    method: str
    params: dict[str, str]
    suite: str
    device: str
    dtype: str
    compiled: bool = False

    def build(self) -> Any:
        steering, _ = build_method(self.method, self.params)
        return POLICIES.load(self.policy)(self.policy, self.checkpoint, steering, self.suite, device=self.device,
                                          dtype=self.dtype, compiled=self.compiled)
