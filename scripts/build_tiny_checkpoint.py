"""Write the embedded tiny OpenVLA-architecture checkpoint (random init, seed 0) to bench/assets/tiny-openvla.

Deterministic: the vocabulary is every word of the LIBERO task instructions (all 130 tasks).
Usage: python scripts/build_tiny_checkpoint.py [OUT_DIR]
"""

import sys
from pathlib import Path

from bench.models.checkpoint import save_openvla
from bench.models.presets import build, tiny
from bench.models.tokenizer import build_word_tokenizer
from bench.policies import TINY_CHECKPOINT


def libero_words() -> list[str]:
    from tokenizers import pre_tokenizers

    from envs.libero import _libero

    benchmark, _, _ = _libero()
    words: set[str] = set()
    for suite in ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90"):
        b = benchmark.get_benchmark_dict()[suite]()
        for i in range(b.n_tasks):
            words |= {w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(b.get_task(i).language.lower())}
    return sorted(words)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TINY_CHECKPOINT
    cfg = tiny()
    tok = build_word_tokenizer(libero_words(), cfg.n_text_vocab, cfg.n_action_bins)
    save_openvla(build(cfg, seed=0), tok, out)
    print(f"wrote {out}")
