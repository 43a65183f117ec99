"""Read and write CogACT checkpoints in the reference's layout (microsoft/CogACT ``vla/load.py:load_vla``).

A run directory holds ``config.json`` (``{"vla": {"base_vlm": …}}``), ``dataset_statistics.json`` (the norm stats
per un-norm key) and ``checkpoints/<name>.pt`` = ``{"model": {"vision_backbone", "projector", "llm_backbone",
"action_model"}}``, each a state dict in Prismatic's names: ``dino_featurizer``/``siglip_featurizer`` (timm, LayerScale
as ``gamma``), the fused-GELU MLP as ``projector.{0,2,4}``, the HF Llama under ``llm.``, the DiT under ``net.``.
The reference reads its tokenizer from the hub; here ``tokenizer.json`` must sit in the directory.
The DiT size is read from the weights' shapes (DiT-S/B/L by width and depth). Tiny presets carry their
shapes in ``config.json["vla_accel_bench"]``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from bench.core.errors import BenchError, reading
from bench.core.models.checkpoint import files_fingerprint
from bench.core.models.cogact import CogACT, CogACTHead
from bench.core.models.config import OpenVLAConfig
from bench.core.models.dit import DIT_SIZES, DiTConfig
from bench.core.models.tokenizer import PromptTokenizer

# Prismatic base VLMs whose architecture equals the openvla-7b preset's (DINOv2+SigLIP 224 px, Llama-2-7B).
KNOWN_BASE_VLMS = ("prism-dinosiglip-224px+7b",)
MODULES = ("vision_backbone", "projector", "llm_backbone", "action_model")

# (native prefix, reference module, reference prefix); per-key renames below.
_PREFIXES = (
    ("vision_backbone.featurizer.", "vision_backbone", "dino_featurizer."),
    ("vision_backbone.fused_featurizer.", "vision_backbone", "siglip_featurizer."),
    ("projector.", "projector", "projector."),
    ("language_model.", "llm_backbone", "llm."),
    ("action_model.net.", "action_model", "net."),
)
_PROJECTOR = {"fc1": "0", "fc2": "2", "fc3": "4"}


def to_reference_name(native: str) -> tuple[str, str]:
    """Native parameter name → (reference module, key in its state dict)."""
    for prefix, module, ref_prefix in _PREFIXES:
        if native.startswith(prefix):
            rest = native[len(prefix):]
            if module == "projector":
                layer, _, tail = rest.partition(".")
                rest = f"{_PROJECTOR[layer]}.{tail}"
            rest = re.sub(r"\.(ls[12])\.scale_factor$", r".\1.gamma", rest)
            return module, ref_prefix + rest
    raise KeyError(native)


def reference_state(model: CogACT) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {m: {} for m in MODULES}
    for name, tensor in model.state_dict().items():
        module, key = to_reference_name(name)
        out[module][key] = tensor.detach().cpu().contiguous()
    return out


def save_cogact(model: CogACT, tokenizer: PromptTokenizer, path: Path | str, base_vlm: str = "tiny") -> None:
    """Write a run directory in the reference's layout (+ our shapes section when the VLM is not a known one)."""
    path = Path(path)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    config: dict = {"vla": {"base_vlm": base_vlm, "future_action_window_size": model.head.dit.future_action_window_size}}
    if base_vlm not in KNOWN_BASE_VLMS:
        config["vla_accel_bench"] = {"vlm": model.cfg.to_hf(), "dit": dataclasses.asdict(model.head.dit)}
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (path / "dataset_statistics.json").write_text(json.dumps(model.cfg.norm_stats, indent=2) + "\n")
    torch.save({"model": reference_state(model)}, path / "checkpoints" / "model.pt")
    tokenizer.save(path)


def _dit_from_weights(action_model: dict[str, torch.Tensor], token_size: int) -> DiTConfig:
    hidden, action_dim = action_model["net.x_embedder.linear.weight"].shape
    depth = len({k.split(".")[2] for k in action_model if k.startswith("net.blocks.")})
    chunk = action_model["net.positional_embedding"].shape[0] - 1
    for h, d, heads in DIT_SIZES.values():
        if (h, d) == (hidden, depth):
            return DiTConfig(h, d, heads, token_size, action_dim, chunk - 1)
    sizes = ", ".join(f"{k} ({h}×{d})" for k, (h, d, _) in DIT_SIZES.items())
    raise BenchError(f"action model of width {hidden} and depth {depth} is none of {sizes}")


def _read_config(path: Path) -> tuple[OpenVLAConfig, dict]:
    with reading(path / "config.json", "CogACT config.json"):
        config = json.loads((path / "config.json").read_text())
    ours = config.get("vla_accel_bench")
    if ours:
        return OpenVLAConfig.from_hf(ours["vlm"]), ours
    base = (config.get("vla") or {}).get("base_vlm")
    if base not in KNOWN_BASE_VLMS:
        raise BenchError(f"{path}/config.json: base_vlm {base!r} is not one this harness builds ({', '.join(KNOWN_BASE_VLMS)})")
    from bench.core.models.presets import openvla_7b

    return openvla_7b(), {}


def load_cogact(path: Path | str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> tuple[CogACT, PromptTokenizer]:
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"checkpoint directory {path} does not exist")
    for name in ("config.json", "dataset_statistics.json", "tokenizer.json"):
        if not (path / name).is_file():
            raise BenchError(f"{path} is not a CogACT run directory (no {name})")
    weights = sorted((path / "checkpoints").glob("*.pt"))
    if len(weights) != 1:
        raise BenchError(f"{path}/checkpoints must hold exactly one .pt file; found {len(weights)}")
    vlm, ours = _read_config(path)
    with reading(path / "dataset_statistics.json", "dataset_statistics.json"):
        vlm = dataclasses.replace(vlm, norm_stats=json.loads((path / "dataset_statistics.json").read_text()))
    with reading(weights[0], "CogACT checkpoint (.pt)"):
        state = torch.load(weights[0], map_location="cpu", weights_only=True, mmap=True)["model"]
    absent = [m for m in MODULES if m not in state]
    if absent:
        raise BenchError(f"{weights[0]} has no {', '.join(absent)} (CogACT checkpoints hold {', '.join(MODULES)})")
    dit = DiTConfig(**ours["dit"]) if ours else _dit_from_weights(state["action_model"], vlm.text.hidden_size)
    with torch.device("meta"):
        model = CogACT(vlm, CogACTHead(dit))
    tensors = {}
    for name, like in model.state_dict().items():
        module, key = to_reference_name(name)
        if key not in state[module]:
            raise BenchError(f"{weights[0]}: {module} has no {key} (does the checkpoint match {vlm.timm_model_ids}?)")
        t = state[module][key]
        if t.shape != like.shape:
            raise BenchError(f"{weights[0]}: {module}.{key} has shape {tuple(t.shape)}, the architecture {tuple(like.shape)}")
        # the reference's use_bf16 casts the VLM only: the action model stays fp32
        tensors[name] = t.to(device=device, dtype=torch.float32 if name.startswith("action_model.") else dtype)
    model.load_state_dict(tensors, assign=True)
    return model.eval(), PromptTokenizer.from_dir(path, vlm.bos_token_id)


def cogact_fingerprint(path: Path | str) -> str:
    """Identity of a run directory for run hashes: its JSON files, tokenizer, and the .pt's size and ends."""
    path = Path(path)
    small = [path / n for n in ("config.json", "dataset_statistics.json", "tokenizer.json")]
    return files_fingerprint(small, sorted((path / "checkpoints").glob("*.pt")))
