"""Behaviour cloning: the batched training forward equals the executor, tokens round-trip, training resumes."""

from __future__ import annotations

import numpy as np
import torch

from bench.core.models.checkpoint import load_openvla
from bench.core.models.processor import (
    OpenVLAProcessor,
    action_tokens,
    env_to_model_gripper,
    gripper_to_env,
    normalize_pixels,
    openvla_prompt,
)
from bench.core.models.tokenizer import build_word_tokenizer
from bench.harness.train.bc_forward import PromptTable, action_logits
from tests.conftest import fake_demo_file, pixels

WORDS = ["pick", "up", "the", "ketchup", "and", "place", "it", "in", "basket", "put", "bowl", "on", "plate"]


def test_batched_training_forward_matches_executor(tiny_model):
    """Teacher-forced logits of a right-padded batch (two prompt lengths) == the executor's greedy decode."""
    cfg = tiny_model.cfg
    tok = build_word_tokenizer(WORDS, cfg.n_text_vocab, cfg.n_action_bins)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    prompts = [tok.encode(openvla_prompt("pick up the ketchup and place it in the basket")),
               tok.encode(openvla_prompt("put the bowl on the plate"))]
    greedy, logits_ref = [], []
    for img, ids in zip(images, prompts, strict=False):
        cache = tiny_model.new_cache(len(tiny_model.with_empty_token(ids)) + 256)
        greedy.append(tiny_model.predict_action(pixels(tiny_model, img), ids, cache).tokens)
    assert torch.equal(normalize_pixels(torch.from_numpy(images))[:1], pixels(tiny_model, images[0]))
    with torch.no_grad():
        table = PromptTable.build(tiny_model, prompts)
        logits = action_logits(tiny_model, normalize_pixels(torch.from_numpy(images)), table, torch.tensor([0, 1]),
                               torch.tensor(greedy))
    assert logits.argmax(-1).tolist() == greedy
    # and the first action token's logits equal the executor's prefill logits
    for b, (img, ids) in enumerate(zip(images, prompts, strict=False)):
        cache = tiny_model.new_cache(len(tiny_model.with_empty_token(ids)) + 256)
        prediction = tiny_model.predict_action(pixels(tiny_model, img), ids, cache)
        with torch.inference_mode():
            logits_ref.append(tiny_model.language_model.lm_head(prediction.hidden))
        torch.testing.assert_close(logits[b, 0], logits_ref[b][0], atol=1e-4, rtol=1e-4)


def test_action_tokens_round_trip_within_half_a_bin(tiny_model):
    x = np.linspace(-1, 1, 1001)
    processor = OpenVLAProcessor(tiny_model.cfg, tokenizer=None)
    back = processor.tokens_to_normalized(action_tokens(x, tiny_model.cfg.n_text_vocab).tolist())
    assert np.max(np.abs(back - x)) <= 1 / 255 + 1e-9


def test_gripper_mapping_inverts_the_policy_post_processing():
    for env_value in (-1.0, 1.0):
        assert gripper_to_env(float(env_to_model_gripper(np.array(env_value)))) == env_value


def test_train_policy_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    from bench.harness.train.policy import BCConfig, train_policy

    fake_demo_file(tmp_path / "demos" / "libero_object" / "t_demo.hdf5")
    cfg = BCConfig(data=[str(tmp_path / "demos")], steps=2, batch_size=2, save_every=1, warmup=1)
    train_policy(cfg, tmp_path / "run", log=lambda m: None)
    cfg.steps = 3
    final = train_policy(cfg, tmp_path / "run", log=lambda m: None)
    steps = [int(line.split(",")[0]) for line in (tmp_path / "run" / "loss.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3]  # resumed at step 2, not from scratch
    model, _ = load_openvla(final)
    stats = model.cfg.norm_stats
    assert stats["libero_object"]["source"] == "demos" and stats["libero_object"]["num_transitions"] == 12
    assert stats["libero_10"]["source"].startswith("pooled")
