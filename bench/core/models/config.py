"""Model configuration, read from and written to an HF-format OpenVLA ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ViTConfig:
    """A timm VisionTransformer as Prismatic builds it (224 px, features from the second-to-last block)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: int = 14
    img_size: int = 224
    class_token: bool = True
    reg_tokens: int = 0
    layer_scale: bool = False  # DINOv2: LayerScale, stored as ``ls{1,2}.scale_factor`` in OpenVLA checkpoints
    no_embed_class: bool = False  # position embedding covers patches only (DINOv2 reg4)
    norm_eps: float = 1e-6

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


# The timm ids OpenVLA's config.json names, with the architecture timm builds for them at 224 px.
TIMM_VITS: dict[str, ViTConfig] = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ViTConfig(
        1024, 24, 16, 4096, class_token=True, reg_tokens=4, layer_scale=True, no_embed_class=True
    ),
    "vit_so400m_patch14_siglip_224": ViTConfig(1152, 27, 16, 4304, class_token=False),
}


# transformers' LlamaConfig defaults. ``save_pretrained`` omits fields equal to them, so the real openvla-7b
# ``text_config`` holds only model_type, pad_token_id, torch_dtype and vocab_size: absent fields mean these.
HF_LLAMA_DEFAULTS: dict[str, Any] = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "vocab_size": 32000,
}


@dataclass(frozen=True)
class LlamaConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    rms_norm_eps: float = HF_LLAMA_DEFAULTS["rms_norm_eps"]
    rope_theta: float = HF_LLAMA_DEFAULTS["rope_theta"]
    max_position_embeddings: int = HF_LLAMA_DEFAULTS["max_position_embeddings"]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, d: dict[str, Any]) -> LlamaConfig:
        """Read a ``text_config`` as transformers does: every absent (or null) field takes its Llama default."""
        def get(key: str) -> Any:
            value = d.get(key)
            return HF_LLAMA_DEFAULTS[key] if value is None else value

        rope = d.get("rope_theta")
        if rope is None:
            rope = (d.get("rope_parameters") or {}).get("rope_theta", HF_LLAMA_DEFAULTS["rope_theta"])
        heads = int(get("num_attention_heads"))
        return cls(
            hidden_size=int(get("hidden_size")),
            intermediate_size=int(get("intermediate_size")),
            num_hidden_layers=int(get("num_hidden_layers")),
            num_attention_heads=heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            vocab_size=int(get("vocab_size")),
            rms_norm_eps=float(get("rms_norm_eps")),
            rope_theta=float(rope),
            max_position_embeddings=int(get("max_position_embeddings")),
        )

    def to_hf(self) -> dict[str, Any]:
        return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class OpenVLAConfig:
    vision: tuple[ViTConfig, ...]
    text: LlamaConfig
    timm_model_ids: tuple[str, ...]
    n_action_bins: int = 256
    pad_to_multiple_of: int = 64
    empty_token_id: int = 29871  # "▁": predict_action appends it when the prompt does not end with it
    bos_token_id: int = 1
    norm_stats: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # other config.json fields, written back unchanged

    @property
    def vision_dim(self) -> int:
        return sum(v.embed_dim for v in self.vision)

    @property
    def n_text_vocab(self) -> int:
        """Vocabulary before padding; action tokens are its last ``n_action_bins`` ids."""
        return self.text.vocab_size - self.pad_to_multiple_of

    @classmethod
    def from_hf(cls, d: dict[str, Any]) -> OpenVLAConfig:
        ids = tuple(d["timm_model_ids"]) if d.get("use_fused_vision_backbone", True) else (d["timm_model_ids"][0],)
        custom = d.get("vla_accel_bench_vit", {})  # tiny presets: ViT dims that no timm id names
        vision = tuple(ViTConfig(**custom[i]) if i in custom else TIMM_VITS[i] for i in ids)
        known = {"timm_model_ids", "text_config", "n_action_bins", "pad_to_multiple_of", "norm_stats",
                 "vla_accel_bench_vit", "empty_token_id", "bos_token_id"}
        return cls(
            vision=vision,
            text=LlamaConfig.from_hf(d["text_config"]),
            timm_model_ids=ids,
            n_action_bins=d.get("n_action_bins", 256),
            pad_to_multiple_of=d.get("pad_to_multiple_of", 64),
            empty_token_id=d.get("empty_token_id", 29871),
            bos_token_id=d.get("bos_token_id", d["text_config"].get("bos_token_id", 1)),
            norm_stats=d.get("norm_stats") or {},
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_hf(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model_type": "openvla",
            "architectures": ["OpenVLAForActionPrediction"],
            "use_fused_vision_backbone": len(self.vision) > 1,
            "image_sizes": [v.img_size for v in self.vision],
            "timm_override_act_layers": [None] * len(self.vision),
            "pad_token_id": self.n_text_vocab,
            **self.extra,
            "timm_model_ids": list(self.timm_model_ids),
            "text_config": {**self.text.to_hf(), "bos_token_id": self.bos_token_id},
            "n_action_bins": self.n_action_bins,
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "norm_stats": self.norm_stats,
            "empty_token_id": self.empty_token_id,
            "bos_token_id": self.bos_token_id,
        }
        custom = {i: dataclasses.asdict(v) for i, v in zip(self.timm_model_ids, self.vision, strict=True) if i not in TIMM_VITS}
        if custom:
            d["vla_accel_bench_vit"] = custom
        return d
