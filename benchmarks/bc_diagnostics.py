"""Per-dimension fit of a behaviour-cloned checkpoint on its own demo frames, teacher-forced vs free-running.

Teacher forcing (training) feeds the demo's earlier action tokens; free-running greedy decoding (evaluation)
feeds the model's own, so the gap between the two shows exposure bias through the autoregressive tokens.
Frames get the evaluation's centre crop. Prints CE and mean |bin error| per action dimension.
Usage: python benchmarks/bc_diagnostics.py --checkpoint DIR --data DEMO_FILE_OR_DIR [--frames 128]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.models.checkpoint import load_openvla
from bench.core.models.image_chain import center_crop
from bench.core.models.openvla import ACTION_DIM
from bench.core.models.processor import normalize_pixels
from bench.harness.train.bc_data import build_dataset
from bench.harness.train.bc_forward import PromptTable, action_logits

DIMS = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")


def batched_logits(model, pixels, table, prompt_index, tokens, batch: int = 32) -> torch.Tensor:
    return torch.cat([action_logits(model, pixels[s: s + batch], table, prompt_index[s: s + batch], tokens[s: s + batch])
                      for s in range(0, len(tokens), batch)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, nargs="+")
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model, tokenizer = load_openvla(args.checkpoint)
    data = build_dataset(args.data, tokenizer, model.cfg.n_text_vocab, stats=model.cfg.norm_stats, log=lambda _: None)
    idx = torch.randint(0, len(data), (args.frames,), generator=torch.Generator().manual_seed(args.seed))
    pixels = normalize_pixels(torch.from_numpy(np.stack([center_crop(data.images[i].numpy()) for i in idx])))
    table, prompt_index = PromptTable.build(model, data.prompts), data.prompt_index[idx]
    target = data.tokens[idx]
    with torch.no_grad():
        logits = batched_logits(model, pixels, table, prompt_index, target)
        free = target.clone()
        for i in range(ACTION_DIM):  # causal: position i sees only tokens < i, so fix one token per pass
            free[:, i] = batched_logits(model, pixels, table, prompt_index, free)[:, i].argmax(-1)
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(-1, ACTION_DIM).mean(0)
    rows = {"CE, teacher-forced": ce, "|bin error|, teacher-forced": (logits.argmax(-1) - target).abs().float().mean(0),
            "|bin error|, free-running": (free - target).abs().float().mean(0)}
    print(f"{args.frames} frames of {len(data)} from {data.n_demos} demos, centre crop; checkpoint {args.checkpoint}")
    print(f"{'':<30}" + "".join(f"{d:>9}" for d in DIMS))
    for name, v in rows.items():
        print(f"{name:<30}" + "".join(f"{x:9.2f}" for x in v.tolist()))
    for name, tokens in (("teacher-forced", logits.argmax(-1)), ("free-running", free)):
        print(f"gripper token correct, {name}: {(tokens[:, -1] == target[:, -1]).float().mean():.1%}")


if __name__ == "__main__":
    main()
