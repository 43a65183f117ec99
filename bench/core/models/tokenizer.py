"""OpenVLA prompts and tokenizers: an HF ``tokenizer.json`` (Llama-2 for the 7B, a word vocabulary for tiny)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

from bench.core.errors import reading
from bench.core.models.processor import openvla_prompt

SPECIALS = ("<unk>", "<s>", "</s>", "▁")  # ids 0..3: unk, BOS, EOS, the "empty" token predict_action appends


class PromptTokenizer:
    """Encodes OpenVLA prompts with a leading BOS, whatever the tokenizer's own post-processor does."""

    def __init__(self, tokenizer: Tokenizer, bos_id: int) -> None:
        self.tokenizer = tokenizer
        self.bos_id = bos_id

    @classmethod
    def from_dir(cls, path: Path, bos_id: int) -> PromptTokenizer:
        file = Path(path) / "tokenizer.json"
        with reading(file, "HF tokenizer file"):  # tokenizers raises a bare Exception for bad files
            return cls(Tokenizer.from_file(str(file)), bos_id)

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text).ids
        return ids if ids and ids[0] == self.bos_id else [self.bos_id, *ids]

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(Path(path) / "tokenizer.json"))


def build_word_tokenizer(words: list[str], n_text_vocab: int, n_action_bins: int) -> PromptTokenizer:
    """A word-level vocabulary of ``n_text_vocab`` ids whose last ``n_action_bins`` are action tokens.

    Mirrors Llama-2's layout for OpenVLA: action bins occupy the highest text ids (t = n_text_vocab − 1 − bin).
    """
    prompt_words = pre_tokenizers.Whitespace().pre_tokenize_str(openvla_prompt(""))
    vocab_words = sorted({w for w, _ in prompt_words} | set(words))
    n_words = n_text_vocab - n_action_bins - len(SPECIALS)
    if len(vocab_words) > n_words:
        raise ValueError(f"{len(vocab_words)} words do not fit in {n_words} ids")
    tokens = [*SPECIALS, *vocab_words]
    tokens += [f"<unused_{i}>" for i in range(n_text_vocab - n_action_bins - len(tokens))]
    tokens += [f"<action_{b}>" for b in reversed(range(n_action_bins))]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PromptTokenizer(tok, bos_id=1)
