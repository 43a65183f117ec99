"""Read and write HF-format OpenVLA checkpoint directories (config.json + safetensors + tokenizer.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench.core.errors import BenchError, reading
from bench.core.models.config import OpenVLAConfig
from bench.core.models.openvla import OpenVLA
from bench.core.models.tokenizer import PromptTokenizer

SAFETENSORS = "safetensors file (truncated or corrupt?)"  # what `reading` calls a weight file in its errors
# Tensors real checkpoints carry that the forward never uses (SigLIP's pooling head); kept for round trips.
UNUSED_PREFIXES = ("vision_backbone.featurizer.attn_pool.", "vision_backbone.fused_featurizer.attn_pool.",
                   "vision_backbone.featurizer.head.", "vision_backbone.fused_featurizer.head.")


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise BenchError(f"{index} is not a safetensors index (needs a weight_map): {exc!r}") from None
        return [path / s for s in shards]
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise BenchError(f"no model*.safetensors in checkpoint directory {path}")
    return files


def checkpoint_files(path: Path | str) -> list[Path]:
    """Check that every file a load needs exists before any is read; returns the weight files.

    A missing tokenizer.json used to surface only after all weights were read, as a bare OS error.
    """
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"checkpoint directory {path} does not exist")
    for name in ("config.json", "tokenizer.json"):
        if not (path / name).is_file():
            raise BenchError(f"{path} is not an OpenVLA checkpoint directory (no {name})")
    files = _weight_files(path)
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise BenchError(f"checkpoint {path}: weight file(s) named by the index are missing: {', '.join(absent)}")
    for file in files:
        _check_safetensors_size(file)
    return files


def _check_safetensors_size(file: Path) -> None:
    """Cheap truncation check from the header alone (8-byte length, JSON, data offsets), before any load."""
    size = file.stat().st_size
    with reading(file, SAFETENSORS), open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or n > size - 8:
            raise ValueError(f"header of {n} bytes in a {size}-byte file")
        header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise BenchError(f"{file} is truncated or corrupt: its header describes {8 + n + end} bytes, "
                         f"the file has {size}")


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors file; a truncated or corrupt file is named in a BenchError."""
    with reading(file, SAFETENSORS), safe_open(str(file), framework="pt", device="cpu") as f:
        return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open is not a mapping


def read_config(path: Path) -> OpenVLAConfig:
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        raise BenchError(f"{path} is not an OpenVLA checkpoint directory (no config.json)")
    try:
        return OpenVLAConfig.from_hf(json.loads(cfg_file.read_text()))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise BenchError(f"{cfg_file} is not a valid OpenVLA config: {exc!r}") from None


def _summarize(keys: set[str], limit: int = 5) -> str:
    shown = sorted(keys)[:limit]
    return ", ".join(shown) + (f" … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_openvla(path: Path | str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> tuple[OpenVLA, PromptTokenizer]:
    """Build the model on the meta device and assign the checkpoint's tensors (cast to ``dtype``)."""
    path = Path(path)
    weight_files = checkpoint_files(path)
    cfg = read_config(path)
    tokenizer = PromptTokenizer.from_dir(path, cfg.bos_token_id)
    with torch.device("meta"):
        model = OpenVLA(cfg)
    expected = set(model.state_dict())
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files:
        tensors.update(_read_tensors(file))
    unused = {k for k in tensors if k.startswith(UNUSED_PREFIXES)}
    missing, unexpected = expected - set(tensors), set(tensors) - expected - unused
    if missing or unexpected:
        parts = [f"missing {len(missing)} keys: {_summarize(missing)}" if missing else "",
                 f"unexpected {len(unexpected)} keys: {_summarize(unexpected)}" if unexpected else ""]
        raise BenchError(f"checkpoint {path} does not match the OpenVLA architecture: " + "; ".join(p for p in parts if p))
    for k in expected:
        want = model.state_dict()[k].shape
        if tensors[k].shape != want:
            raise BenchError(f"checkpoint {path}: {k} has shape {tuple(tensors[k].shape)}, config implies {tuple(want)}")
    model.load_state_dict({k: tensors[k].to(device=device, dtype=dtype) for k in expected}, assign=True)
    model.unused_tensors = {k: tensors[k] for k in unused}
    model.eval()
    return model, tokenizer


def save_openvla(model: OpenVLA, tokenizer: PromptTokenizer, path: Path | str) -> None:
    """Write config.json, model.safetensors and tokenizer.json (the layout ``load_openvla`` reads)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(model.cfg.to_hf(), indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state.update(getattr(model, "unused_tensors", {}))
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(path)


def fingerprint(path: Path | str) -> str:
    """Identity of a checkpoint for run hashes: config, tokenizer and each weight file's size and ends."""
    path = Path(path)
    return files_fingerprint([path / "config.json", path / "tokenizer.json"], checkpoint_files(path))


def files_fingerprint(small_files: list[Path], weight_files: list[Path]) -> str:
    """Small files hashed whole; each weight file by name, size and its first and last MiB (fast on 15 GB)."""
    h = hashlib.sha256()
    for file in small_files:
        h.update(file.read_bytes())
    for file in weight_files:
        size = file.stat().st_size
        h.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]
