"""Behaviour-cloning data: demos → (224 px image, prompt ids, 7 action tokens) samples.

Two stages, so that a pack (``bench/harness/train/pack.py``) can sit between them:
1. ``DemoFrames`` (``demo_frames.py``): frames through the evaluation chain up to the resize (180° rotation, JPEG round trip,
   lanczos3 to 224) and un-normalised actions with the gripper mapped from robosuite (−1 open, +1 close) to
   OpenVLA's [0, 1] (1 = open). Read from LIBERO-layout HDF5 files or from a pack.
2. ``BCDataset``: the arm dims normalised with per-suite q01/q99 (stored as the checkpoint's ``norm_stats``;
   a fine-tune keeps its checkpoint's) and tokenised into 256 bins; prompts encoded by the model's tokenizer.
The 0.9-area crop is a training-time augmentation (``bench/harness/train/augment.py``) whose centred version the
policy applies at evaluation, as OpenVLA does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.models.processor import action_tokens, normalize_actions, openvla_prompt
from bench.harness.train.demo_frames import DemoFrames, read_hdf5_demos
from bench.harness.train.pack import is_pack, load_pack


def read_demo_frames(roots: list[str], log: Callable[[str], None] = print) -> DemoFrames:
    """Each root is a pack folder (``pack.json``) or LIBERO-layout HDF5 demos."""
    if not roots:
        raise BenchError("no training data given")
    return DemoFrames.concat([load_pack(r, log=log) if is_pack(r) else read_hdf5_demos(r, log=log) for r in roots])


@dataclass
class BCDataset:
    images: torch.Tensor  # [N, 224, 224, 3] uint8
    tokens: torch.Tensor  # [N, 7] action token ids
    prompt_index: torch.Tensor  # [N] into prompts
    demo_index: torch.Tensor  # [N] into the demos
    prompts: list[list[int]]
    instructions: list[str]  # the text of each prompt
    stats: dict[str, dict]  # per suite: the norm stats the tokens were made with
    n_demos: int

    def __len__(self) -> int:
        return len(self.tokens)

    def to(self, device: torch.device | str) -> BCDataset:
        move = {k: getattr(self, k).to(device) for k in ("images", "tokens", "prompt_index", "demo_index")}
        return BCDataset(**move, prompts=self.prompts, instructions=self.instructions, stats=self.stats,
                         n_demos=self.n_demos)

    def holdout(self, per_instruction: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, held-out) frame indices: the last ``per_instruction`` demos of each instruction are held out
        (never fewer than one demo left for training)."""
        held = torch.zeros(len(self), dtype=torch.bool)
        demo_prompt = {}
        for d, p in zip(self.demo_index.tolist(), self.prompt_index.tolist(), strict=True):
            demo_prompt.setdefault(d, p)
        for p in range(len(self.prompts)):
            demos = sorted(d for d, q in demo_prompt.items() if q == p)
            for d in demos[len(demos) - min(per_instruction, len(demos) - 1):] if per_instruction else []:
                held |= (self.demo_index == d).cpu()
        return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


def tokenise(data: DemoFrames, tokenizer, n_text_vocab: int, stats: dict[str, dict] | None = None) -> BCDataset:
    """Samples for the model: ``stats`` (per suite) are the normalisation; None: the data's own."""
    stats = stats or data.suite_stats()
    suites = [d["suite"] for d in data.demos]
    missing = sorted(set(suites) - set(stats))
    if missing:
        raise BenchError(f"the checkpoint has no norm stats for suite(s) {', '.join(missing)} of the data")
    tokens = np.empty((len(data), 7), np.int64)
    for suite in sorted(set(suites)):
        rows = np.isin(data.demo_index, [i for i, s in enumerate(suites) if s == suite])
        tokens[rows] = action_tokens(normalize_actions(data.actions[rows], stats[suite]), n_text_vocab)
    instructions = list(dict.fromkeys(d["instruction"] for d in data.demos))
    demo_prompt = np.array([instructions.index(d["instruction"]) for d in data.demos])
    return BCDataset(torch.from_numpy(data.frames), torch.from_numpy(tokens), torch.from_numpy(demo_prompt[data.demo_index]),
                     torch.from_numpy(data.demo_index.astype(np.int64)),
                     [tokenizer.encode(openvla_prompt(t)) for t in instructions], instructions,
                     {s: stats[s] for s in sorted(set(suites))}, len(data.demos))


def build_dataset(data: list[str], tokenizer, n_text_vocab: int, stats: dict[str, dict] | None = None,
                  log: Callable[[str], None] = print) -> BCDataset:
    return tokenise(read_demo_frames(data, log=log), tokenizer, n_text_vocab, stats)
