"""HF-format OpenVLA checkpoints: round trip, clear errors on bad directories, the shipped tiny model."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.core.errors import BenchError
from bench.core.models.checkpoint import load_openvla, save_openvla
from bench.core.models.processor import OpenVLAProcessor, openvla_prompt
from bench.core.models.tokenizer import build_word_tokenizer
from bench.harness.openvla_policy import TINY_CHECKPOINT
from tests.conftest import pixels


@pytest.fixture
def saved(tmp_path, tiny_model):
    tok = build_word_tokenizer(["pick", "up", "the", "bowl"], tiny_model.cfg.n_text_vocab, 256)
    save_openvla(tiny_model, tok, tmp_path)
    return tmp_path


def actions(model, tok, image, steps=2):
    ids = tok.encode(openvla_prompt("pick up the bowl"))
    n = len(model.with_empty_token(ids)) + 256
    cache = model.new_cache(n)
    px = pixels(model, image)
    return [model.predict_action(px, ids, cache).tokens for _ in range(steps)]


def test_round_trip_gives_identical_actions(saved, tiny_model, frames):
    loaded, tok = load_openvla(saved)
    image = frames[0][:224, :224]
    assert actions(loaded, tok, image) == actions(tiny_model, tok, image)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert json.loads((saved / "config.json").read_text())["model_type"] == "openvla"


def test_layer_scale_is_stored_under_openvla_names(saved):
    keys = load_file(str(saved / "model.safetensors")).keys()
    assert "vision_backbone.featurizer.blocks.0.ls1.scale_factor" in keys
    assert "language_model.lm_head.weight" in keys and "projector.fc3.bias" in keys


def test_missing_and_unexpected_keys_are_named(saved):
    state = load_file(str(saved / "model.safetensors"))
    del state["projector.fc2.weight"]
    state["projector.fc9.weight"] = torch.zeros(1)
    save_file(state, str(saved / "model.safetensors"))
    with pytest.raises(BenchError, match=r"missing 1 keys: projector\.fc2\.weight.*unexpected 1 keys: projector\.fc9"):
        load_openvla(saved)


def test_shape_mismatch_and_missing_config_are_clear(saved, tmp_path_factory):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] = 64
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BenchError, match=r"has shape"):
        load_openvla(saved)
    with pytest.raises(BenchError, match=r"no config\.json"):
        load_openvla(tmp_path_factory.mktemp("empty"))


def test_bf16_load(saved):
    model, _ = load_openvla(saved, dtype=torch.bfloat16)
    assert model.language_model.lm_head.weight.dtype == torch.bfloat16


def test_shipped_tiny_checkpoint_loads_and_decodes_actions(frames):
    model, tok = load_openvla(TINY_CHECKPOINT)
    assert model.cfg.vision[0].grid == 16  # the 16×16 visual-token grid the methods index into
    ids = tok.encode(openvla_prompt("put the black bowl on the plate"))
    assert ids[0] == 1 and 0 not in ids  # BOS first, no unknown words for a LIBERO instruction
    tokens = actions(model, tok, frames[0][:224, :224], steps=1)[0]
    a = OpenVLAProcessor(model.cfg, tok).tokens_to_normalized(tokens)
    assert a.shape == (7,) and np.all(np.abs(a) < 1)


def test_action_detokenization_matches_reference(tiny_model):
    n = tiny_model.cfg.n_text_vocab  # 1024 for tiny; 32000 for the 7B
    processor = OpenVLAProcessor(tiny_model.cfg, tokenizer=None)
    centers = processor.tokens_to_normalized([n - 1, n - 256, n - 128, 5])
    bins = np.linspace(-1, 1, 256)
    mid = (bins[:-1] + bins[1:]) / 2
    assert np.allclose(centers, [mid[0], mid[254], mid[127], mid[254]])  # idx = clip(n − t − 1, 0, 254)
    stats = {"q01": [0, -2, 0, 0, 0, 0, 0], "q99": [2, 2, 1, 1, 1, 1, 1], "mask": [True] * 6 + [False]}
    tiny_model.cfg.norm_stats["k"] = {"action": stats}
    out = processor.unnormalize(np.array([0.0, 0.5, -1, 1, 0, 0, 0.9]), "k")
    assert np.allclose(out, [1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.9])


def test_minimal_text_config_takes_transformers_llama_defaults():
    """The real openvla-7b text_config is minimal; absent fields are transformers' Llama defaults (eps 1e-6)."""
    from bench.core.models.config import OpenVLAConfig
    from bench.core.models.openvla import OpenVLA

    cfg = OpenVLAConfig.from_hf({
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "use_fused_vision_backbone": True, "n_action_bins": 256, "pad_to_multiple_of": 64,
        "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064},
    })
    t = cfg.text
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads) == (4096, 11008, 32, 32)
    assert t.num_key_value_heads == 32 and t.rms_norm_eps == 1e-6 and t.rope_theta == 10000.0
    assert t.max_position_embeddings == 2048 and t.vocab_size == 32064
    with torch.device("meta"):
        model = OpenVLA(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["language_model.model.layers.31.mlp.gate_proj.weight"] == (11008, 4096)
    assert shapes["language_model.lm_head.weight"] == (32064, 4096)


def test_absent_eps_is_1e6_not_1e5(saved):
    cfg = json.loads((saved / "config.json").read_text())
    del cfg["text_config"]["rms_norm_eps"]
    (saved / "config.json").write_text(json.dumps(cfg))
    model, _ = load_openvla(saved)
    assert model.cfg.text.rms_norm_eps == 1e-6


def test_missing_tokenizer_is_named_before_weights_are_read(saved, monkeypatch):
    import bench.core.models.checkpoint as ckpt

    (saved / "tokenizer.json").unlink()
    monkeypatch.setattr(ckpt, "_read_tensors", lambda f: pytest.fail("weights read before the file check"))
    with pytest.raises(BenchError, match=r"no tokenizer\.json"):
        load_openvla(saved)


@pytest.mark.parametrize("keep", [0.5, 0.999, 4])
def test_truncated_safetensors_names_the_file(saved, keep):
    from bench.core.models.checkpoint import fingerprint

    file = saved / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    for load in (load_openvla, fingerprint):
        with pytest.raises(BenchError, match=r"model\.safetensors.*(truncated|corrupt)"):
            load(saved)


def test_corrupt_tokenizer_is_named(saved):
    (saved / "tokenizer.json").write_text("{not json")
    with pytest.raises(BenchError, match=r"tokenizer\.json is not a readable"):
        load_openvla(saved)
