"""A compact, committable training set: demo frames after the evaluation chain as one H.264 video.

A pack is a folder that travels with the code to a GPU machine that has PyTorch but no LIBERO::

    frames.mp4      every frame (224 px, after rotation, JPEG round trip and lanczos resize), H.264 yuv420p
    labels.npz      actions [N, 7] (un-normalised, gripper 1 = open), demo_index [N], frame_means [N, 3]
    pack.json       demos (instruction, suite, source, frames, seed, placement), codec settings and error, content hash
    tokenizer.json  the word tokenizer of every LIBERO instruction (what a from-scratch model is trained with)

Tokens are made at load time (``bc_data.tokenise``) so a fine-tune can use its checkpoint's norm stats.
``frame_means`` are the per-frame channel means of the frames as the packer decoded them: the loader compares
its own decode with them, so a different decoder (OpenCV's FFmpeg on the GPU machine) is measured, not assumed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError, reading
from bench.harness.train.demo_frames import DemoFrames

PACK_VERSION = 1
DECODER_TOLERANCE = 1.0  # max |Δ frame mean| (levels) between two decoders before the loader refuses


def is_pack(path: str | Path) -> bool:
    return (Path(path) / "pack.json").is_file()


def write_pack(data: DemoFrames, out: Path, tokenizer, crf: int = 23) -> dict:
    """Encode ``data`` into ``out``; returns the codec report (also stored in pack.json)."""
    import imageio.v2 as imageio

    out.mkdir(parents=True, exist_ok=True)
    video = out / "frames.mp4"
    writer = imageio.get_writer(video, fps=20, codec="libx264", quality=None, macro_block_size=16,
                                pixelformat="yuv420p", ffmpeg_params=["-crf", str(crf), "-preset", "slow"])
    for frame in data.frames:
        writer.append_data(frame)
    writer.close()
    decoded, decoder = decode_frames(video, len(data))
    err = abs_error_stats(decoded, data.frames)
    codec = {"codec": "libx264", "crf": crf, "preset": "slow", "pix_fmt": "yuv420p", "decoder": decoder,
             "mean_abs_error": round(err["mean"], 3), "p99_abs_error": err["p99"], "max_abs_error": err["max"]}
    np.savez_compressed(out / "labels.npz", actions=data.actions, demo_index=data.demo_index,
                        frame_means=_frame_means(decoded))
    tokenizer.save(out)
    meta = {"version": PACK_VERSION, "frames": len(data), "size": int(data.frames.shape[1]), "demos": data.demos,
            "suites": sorted({d["suite"] for d in data.demos}), "codec": codec,
            "bytes": {"frames.mp4": video.stat().st_size, "labels.npz": (out / "labels.npz").stat().st_size}}
    meta["content_sha256"] = _content_hash(out)
    (out / "pack.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def abs_error_stats(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> dict:
    """Mean, 99th percentile (numpy's linear rule) and max of |a − b| over uint8 frames, from a histogram built
    chunk by chunk: the int16 difference of 400 demos at once needs ~4× the frames' memory (it was OOM-killed)."""
    counts = np.zeros(256, np.int64)
    for i in range(0, len(a), chunk):
        diff = np.abs(a[i:i + chunk].astype(np.int16) - b[i:i + chunk].astype(np.int16))
        counts += np.bincount(diff.ravel(), minlength=256)
    n, levels = int(counts.sum()), np.arange(256)
    cumulative = np.cumsum(counts)
    rank = 0.99 * (n - 1)
    lo, hi = (int(np.searchsorted(cumulative, k, side="right")) for k in (np.floor(rank), np.ceil(rank)))
    return {"mean": float((counts * levels).sum() / n), "p99": float(lo + (hi - lo) * (rank - np.floor(rank))),
            "max": int(levels[counts > 0].max())}


def load_pack(path: str | Path, log: Callable[[str], None] = print) -> DemoFrames:
    """Decode a pack; refuses a frame-count mismatch, a changed file or a decoder that disagrees with the packer's."""
    path = Path(path)
    with reading(path / "pack.json", "pack manifest"):
        meta = json.loads((path / "pack.json").read_text())
    if meta.get("version") != PACK_VERSION:
        raise BenchError(f"{path}: pack version {meta.get('version')!r}; this harness reads version {PACK_VERSION}")
    verify_content(path, meta)
    with reading(path / "labels.npz", "pack labels"):
        labels = np.load(path / "labels.npz")
        actions, demo_index, means = labels["actions"], labels["demo_index"], labels["frame_means"]
    frames, decoder = decode_frames(path / "frames.mp4", meta["frames"])
    drift = float(np.abs(_frame_means(frames) - means).max())
    if drift > DECODER_TOLERANCE:
        raise BenchError(f"{path}: {decoder} decodes frames that differ from the packer's decode by up to "
                         f"{drift:.2f} levels in a frame mean (tolerance {DECODER_TOLERANCE})")
    c = meta["codec"]
    log(f"pack {path.name}: {len(frames)} frames of {len(meta['demos'])} demos decoded with {decoder}; codec error "
        f"at packing mean {c['mean_abs_error']:.2f}, p99 {c['p99_abs_error']:.0f} levels; decoder drift {drift:.3f}")
    return DemoFrames(frames, actions, demo_index.astype(np.int32), meta["demos"])


def verify_content(path: str | Path, meta: dict) -> None:
    """Refuse a pack whose frames.mp4 or labels.npz is not the one its manifest's content hash was taken of."""
    path = Path(path)
    if _content_hash(path) != meta["content_sha256"]:
        raise BenchError(f"{path}: frames.mp4 or labels.npz changed since the pack was written (content hash differs)")


def packed_seeds(path: str | Path, suite: str, placement: str) -> set[int]:
    """Seeds of ``suite``'s demos in a pack placed by ``placement`` (so ``bench demos generate`` does not make
    them again); a demo without a recorded placement was placed by LIBERO's own reset, ``libero``."""
    path = Path(path)
    with reading(path / "pack.json", "pack manifest"):
        demos = json.loads((path / "pack.json").read_text())["demos"]
    return {int(d["seed"]) for d in demos
            if d["suite"] == suite and "seed" in d and d.get("placement", "libero") == placement}


def pack_tokenizer_dir(roots: list[str]) -> Path | None:
    """The folder of the first pack among ``roots`` (its tokenizer.json), if any."""
    return next((Path(r) for r in roots if is_pack(r)), None)


def decode_frames(video: Path, n: int) -> tuple[np.ndarray, str]:
    """All frames of ``video`` as RGB uint8, checked to be exactly ``n``; OpenCV where present, else imageio."""
    out: np.ndarray | None = None
    count = 0
    for count, frame in enumerate(_frames(video), start=1):
        if out is None:
            out = np.empty((n, *frame.shape), np.uint8)
        if count > n:
            raise BenchError(f"{video}: holds more than the {n} frames its pack.json lists")
        out[count - 1] = frame
    if count != n or out is None:
        raise BenchError(f"{video}: decoded {count} frames, pack.json lists {n} (truncated or wrong file)")
    return out, _decoder_name()


def _frames(video: Path):
    if not video.is_file():
        raise BenchError(f"{video}: no such file")
    try:
        import cv2
    except ImportError:
        import imageio.v2 as imageio

        with reading(video, "H.264 video"):
            yield from imageio.get_reader(video)
        return
    cap = cv2.VideoCapture(str(video))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        yield frame[:, :, ::-1]
    cap.release()


def _decoder_name() -> str:
    try:
        import cv2

        return f"opencv {cv2.__version__}"
    except ImportError:
        import imageio_ffmpeg

        return f"imageio-ffmpeg {imageio_ffmpeg.__version__}"


def _frame_means(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1, frames.shape[-1]).mean(1).astype(np.float32)


def _content_hash(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("frames.mp4", "labels.npz"):
        with reading(path / name, "pack file"):
            h.update((path / name).read_bytes())
    return h.hexdigest()
