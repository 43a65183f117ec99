"""HF-format OpenVLA checkpoints: round trip, clear errors on bad directories, the shipped tiny model."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.errors import BenchError
from bench.models.checkpoint import load_openvla, save_openvla
from bench.models.tokenizer import build_word_tokenizer, openvla_prompt
from bench.policies import TINY_CHECKPOINT


@pytest.fixture
def saved(tmp_path, tiny_model):
    tok = build_word_tokenizer(["pick", "up", "the", "bowl"], tiny_model.cfg.n_text_vocab, 256)
    save_openvla(tiny_model, tok, tmp_path)
    return tmp_path


def actions(model, tok, image, steps=2):
    ids = tok.encode(openvla_prompt("pick up the bowl"))
    n = len(model.with_empty_token(ids)) + 256
    cache = model.new_cache(n)
    px = model.pixel_values(image)
    return [model.predict_action_tokens(px, ids, cache) for _ in range(steps)]


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
    a = model.tokens_to_normalized(tokens)
    assert a.shape == (7,) and np.all(np.abs(a) < 1)


def test_action_detokenization_matches_reference(tiny_model):
    n = tiny_model.cfg.n_text_vocab  # 1024 for tiny; 32000 for the 7B
    centers = tiny_model.tokens_to_normalized([n - 1, n - 256, n - 128, 5])
    bins = np.linspace(-1, 1, 256)
    mid = (bins[:-1] + bins[1:]) / 2
    assert np.allclose(centers, [mid[0], mid[254], mid[127], mid[254]])  # idx = clip(n − t − 1, 0, 254)
    stats = {"q01": [0, -2, 0, 0, 0, 0, 0], "q99": [2, 2, 1, 1, 1, 1, 1], "mask": [True] * 6 + [False]}
    tiny_model.cfg.norm_stats["k"] = {"action": stats}
    out = tiny_model.unnormalize(np.array([0.0, 0.5, -1, 1, 0, 0, 0.9]), "k")
    assert np.allclose(out, [1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.9])
