"""Native ViT == timm's VisionTransformer on the same weights (second-to-last block, patch tokens)."""

import pytest
import torch

from bench.core.models.config import ViTConfig
from bench.core.models.vit import VisionTransformer
from tests.timm_reference import import_timm


def timm_vit(cfg: ViTConfig):
    import_timm()
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    return TimmViT(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                   num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_hidden / cfg.embed_dim, class_token=cfg.class_token,
                   reg_tokens=cfg.reg_tokens, no_embed_class=cfg.no_embed_class,
                   init_values=1e-5 if cfg.layer_scale else None, num_classes=0,
                   global_pool="token" if cfg.class_token else "map").eval()


def to_openvla_names(state: dict) -> dict:
    return {k.replace(".gamma", ".scale_factor"): v for k, v in state.items() if not k.startswith(("head", "fc_norm", "attn_pool"))}


@pytest.mark.parametrize(
    "cfg",
    [
        ViTConfig(64, 4, 2, 256, reg_tokens=4, layer_scale=True, no_embed_class=True),  # DINOv2-reg4 shape
        ViTConfig(96, 3, 2, 384, class_token=False),  # SigLIP shape
    ],
)
def test_features_equal_timm(cfg):
    ref = timm_vit(cfg)
    torch.manual_seed(0)
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ours = VisionTransformer(cfg).eval()
    ours.load_state_dict(to_openvla_names(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = ref.get_intermediate_layers(x, n={cfg.depth - 2})[0]  # Prismatic's call: patch tokens, no norm
        got = ours(x)
    assert got.shape == (2, 256, cfg.embed_dim)
    assert (got - want).abs().max() < 1e-5


def test_openvla_7b_vit_shapes_match_timm_ids():
    timm = import_timm()
    from bench.core.models.config import TIMM_VITS

    for name, cfg in TIMM_VITS.items():
        ref = timm.create_model(name, pretrained=False, img_size=224, device="meta", num_classes=0)
        with torch.device("meta"):
            ours = VisionTransformer(cfg)
        want = {k.replace(".gamma", ".scale_factor"): v.shape for k, v in ref.state_dict().items()
                if not k.startswith(("attn_pool", "head", "fc_norm"))}
        assert {k: v.shape for k, v in ours.state_dict().items()} == want, name
        act = ref.blocks[0].mlp.act  # our Mlp uses exact (erf) GELU for both backbones
        assert isinstance(act, torch.nn.GELU) and act.approximate == "none", name
        assert ref.num_prefix_tokens == cfg.num_prefix_tokens and ref.no_embed_class == cfg.no_embed_class
