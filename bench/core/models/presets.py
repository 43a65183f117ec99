"""Model presets: the real OpenVLA-7B and CogACT shapes (meta device, for FLOPs) and the tiny CPU presets."""

from __future__ import annotations

import torch

from bench.core.errors import unknown_name
from bench.core.models.cogact import CogACT, CogACTHead
from bench.core.models.config import LlamaConfig, OpenVLAConfig, ViTConfig
from bench.core.models.dit import DiTConfig, dit_config
from bench.core.models.openvla import OpenVLA

LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


def openvla_7b() -> OpenVLAConfig:
    """openvla/openvla-7b: DINOv2 ViT-L/14-reg4 + SigLIP SO400M/14 at 224 px, Llama-2-7B (vocab 32064)."""
    text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, rms_norm_eps=1e-6)
    return OpenVLAConfig(
        vision=(ViTConfig(1024, 24, 16, 4096, reg_tokens=4, layer_scale=True, no_embed_class=True),
                ViTConfig(1152, 27, 16, 4304, class_token=False)),
        text=text,
        timm_model_ids=("vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"),
    )


def identity_norm_stats() -> dict:
    """q01=−1, q99=+1 on the 6 arm dims (un-normalisation is the identity), gripper unmasked in [0, 1]."""
    action = {"q01": [-1.0] * 6 + [0.0], "q99": [1.0] * 6 + [1.0], "mask": [True] * 6 + [False]}
    return {suite: {"action": action} for suite in LIBERO_SUITES}


def tiny() -> OpenVLAConfig:
    """Same structure as OpenVLA at CPU size: two ViTs with 14 px patches at 224 px (16×16 visual tokens)
    and a narrow Llama with the 7B's **32 layers**, so every method runs with its reference layer indices
    (FastV K=2, SparseVLM 2/6/15, VLA-Cache 2/6/9/11 and layer-15 attention) unchanged."""
    text = LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=32, num_attention_heads=4,
                       num_key_value_heads=4, vocab_size=1024 + 64, rms_norm_eps=1e-6)
    return OpenVLAConfig(
        vision=(ViTConfig(64, 3, 2, 256, reg_tokens=4, layer_scale=True, no_embed_class=True),
                ViTConfig(96, 3, 2, 384, class_token=False)),
        text=text,
        timm_model_ids=("tiny_dinov2_reg4_patch14_224", "tiny_siglip_patch14_224"),
        empty_token_id=3,
        norm_stats=identity_norm_stats(),
    )


PRESETS = {"openvla-7b": openvla_7b, "tiny": tiny}


def preset(name: str) -> OpenVLAConfig:
    if name not in PRESETS:
        raise unknown_name("model preset", name, list(PRESETS))
    return PRESETS[name]()


def tiny_dit(token_size: int) -> DiTConfig:
    """A DiT with the reference's structure at CPU size (2 blocks of width 64)."""
    return DiTConfig(hidden_size=64, depth=2, num_heads=4, token_size=token_size)


# CogACT = Prismatic ``prism-dinosiglip-224px+7b`` (OpenVLA-7B's vision stack and Llama-2-7B) + DiT-S/B/L.
COGACT_PRESETS = {"cogact-small": "DiT-S", "cogact-base": "DiT-B", "cogact-large": "DiT-L", "tiny-cogact": "tiny"}


def cogact_preset(name: str) -> tuple[OpenVLAConfig, CogACTHead]:
    if name not in COGACT_PRESETS:
        raise unknown_name("CogACT preset", name, list(COGACT_PRESETS))
    size = COGACT_PRESETS[name]
    vlm = tiny() if size == "tiny" else openvla_7b()
    d = vlm.text.hidden_size
    return vlm, CogACTHead(tiny_dit(d) if size == "tiny" else dit_config(size, d))


def build_cogact(name: str, seed: int = 0, device: str = "cpu") -> CogACT:
    """Random-init CogACT preset (torch's default inits; on ``device='meta'`` only shapes, for FLOPs)."""
    vlm, head = cogact_preset(name)
    torch.manual_seed(seed)
    with torch.device(device):
        return CogACT(vlm, head).eval()


def build(cfg: OpenVLAConfig, seed: int = 0, device: str = "cpu") -> OpenVLA:
    """Random-init model; on ``device='meta'`` only shapes exist (for FLOPs of the 7B)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = OpenVLA(cfg)
    if device != "meta":
        for name, p in model.named_parameters():
            if name.endswith("scale_factor"):
                torch.nn.init.constant_(p, 0.1)
    return model.eval()
