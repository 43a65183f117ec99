"""Write the embedded tiny OpenVLA-architecture checkpoint (random init, seed 0) to bench/assets/tiny-openvla.

Deterministic: the vocabulary is every word of the LIBERO task instructions (all 130 tasks).
Usage: python scripts/build_tiny_checkpoint.py [OUT_DIR]
"""

import sys
from pathlib import Path

from bench.core.models.checkpoint import save_openvla
from bench.core.models.presets import build, tiny
from bench.core.models.tokenizer import build_word_tokenizer
from bench.harness.openvla_policy import TINY_CHECKPOINT
from envs.libero import instruction_words

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TINY_CHECKPOINT
    cfg = tiny()
    tok = build_word_tokenizer(instruction_words(), cfg.n_text_vocab, cfg.n_action_bins)
    save_openvla(build(cfg, seed=0), tok, out)
    print(f"wrote {out}")
