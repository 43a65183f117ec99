"""Training packs, the device-side augmentation and the CPU/CUDA trainer, end to end on a tiny pack."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.core.errors import BenchError
from bench.core.models.checkpoint import load_openvla
from bench.core.models.image_chain import center_crop
from bench.core.models.presets import tiny
from bench.core.models.tokenizer import build_word_tokenizer
from bench.harness.train.augment import augment, hsv_to_rgb, rgb_to_hsv
from bench.harness.train.bc_data import DemoFrames, read_demo_frames, tokenise
from bench.harness.train.pack import abs_error_stats, load_pack, verify_content, write_pack
from tests.conftest import ROOT as REPO
from tests.conftest import fake_demo_file

INSTRUCTIONS = ("pick up the ketchup and place it in the basket", "put the bowl on the plate")
# what a GPU machine without LIBERO lacks: importing any of these fails in the device-path test
BLOCKED = ("libero", "robosuite", "mujoco", "simplejpeg", "imageio_ffmpeg", "h5py", "ray")


def smooth_frames(n: int, seed: int = 0) -> np.ndarray:
    """Camera-like frames (gradients and boxes that move), which H.264 compresses as it does LIBERO's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    out = np.empty((n, 224, 224, 3), np.uint8)
    for i in range(n):
        img = np.stack([xx * 0.5 + 40, yy * 0.4 + 60, (xx + yy) * 0.3 + 30], -1) + rng.normal(0, 2, (224, 224, 3))
        y, x = 40 + 3 * i, 60 + 2 * i
        img[y: y + 50, x: x + 40] = [200, 60, 50]
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def small_demos(per_instruction: int = 3, frames: int = 8) -> DemoFrames:
    rng = np.random.default_rng(1)
    demos, parts, index = [], [], []
    for k in range(per_instruction * len(INSTRUCTIONS)):
        demos.append({"instruction": INSTRUCTIONS[k % 2], "suite": "libero_object", "source": f"t/demo_{k}", "frames": frames})
        parts.append(rng.uniform(-0.9, 0.9, (frames, 7)))
        parts[-1][:, 6] = rng.integers(0, 2, frames)
        index.append(np.full(frames, k, np.int32))
    return DemoFrames(smooth_frames(len(demos) * frames), np.concatenate(parts), np.concatenate(index), demos)


def word_tokenizer():
    cfg = tiny()
    words = sorted({w for t in INSTRUCTIONS for w in t.split()})
    return build_word_tokenizer(words, cfg.n_text_vocab, cfg.n_action_bins)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "tiny"
    write_pack(small_demos(), out, word_tokenizer(), crf=23)
    return out


def test_pack_round_trip_keeps_labels_exactly_and_frames_within_the_codec_error(pack):
    data = small_demos()
    loaded = load_pack(pack, log=lambda m: None)
    meta = json.loads((pack / "pack.json").read_text())
    assert np.array_equal(loaded.actions, data.actions) and np.array_equal(loaded.demo_index, data.demo_index)
    assert loaded.demos == data.demos and meta["frames"] == len(data)
    err = np.abs(loaded.frames.astype(int) - data.frames.astype(int))
    assert err.mean() < 3 and abs(err.mean() - meta["codec"]["mean_abs_error"]) < 0.05
    assert sum(meta["bytes"].values()) < 0.2 * data.frames.nbytes  # compact


def test_pack_loader_refuses_wrong_frame_counts_and_changed_files(pack, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(pack, bad)
    meta = json.loads((bad / "pack.json").read_text())
    (bad / "pack.json").write_text(json.dumps({**meta, "frames": meta["frames"] + 1}))
    with pytest.raises(BenchError, match=r"decoded 48 frames, pack.json lists 49"):
        load_pack(bad, log=lambda m: None)
    (bad / "pack.json").write_text(json.dumps({**meta, "frames": meta["frames"] - 1}))
    with pytest.raises(BenchError, match="more than the 47 frames"):
        load_pack(bad, log=lambda m: None)
    (bad / "pack.json").write_text(json.dumps(meta))
    (bad / "frames.mp4").write_bytes((pack / "frames.mp4").read_bytes()[:-5000])
    with pytest.raises(BenchError, match="content hash differs"):
        load_pack(bad, log=lambda m: None)


def test_hdf5_demos_and_their_pack_give_the_same_samples(tmp_path):
    fake_demo_file(tmp_path / "demos" / "libero_object" / "t_demo.hdf5", n_demos=2, T=5)
    raw = read_demo_frames([str(tmp_path / "demos")], log=lambda m: None)
    write_pack(raw, tmp_path / "pack", word_tokenizer(), crf=0)
    packed = read_demo_frames([str(tmp_path / "pack")], log=lambda m: None)
    a = tokenise(raw, word_tokenizer(), tiny().n_text_vocab)
    b = tokenise(packed, word_tokenizer(), tiny().n_text_vocab)
    assert torch.equal(a.tokens, b.tokens) and a.prompts == b.prompts and a.stats == b.stats
    # random-noise frames are the codec's worst case (4:2:0 chroma); the pack reports the error it has
    reported = json.loads((tmp_path / "pack" / "pack.json").read_text())["codec"]["mean_abs_error"]
    assert abs((a.images.int() - b.images.int()).abs().float().mean() - reported) < 0.01


def test_holdout_is_the_last_demo_of_each_instruction():
    data = tokenise(small_demos(per_instruction=3, frames=4), word_tokenizer(), tiny().n_text_vocab)
    train, held = data.holdout(1)
    assert sorted(set(data.demo_index[held].tolist())) == [4, 5] and len(train) + len(held) == len(data)
    assert len(data.holdout(0)[1]) == 0
    assert sorted(set(data.demo_index[data.holdout(9)[1]].tolist())) == [2, 3, 4, 5]  # one demo each stays


def test_centre_box_of_the_training_crop_is_the_evaluation_crop():
    images = torch.from_numpy(smooth_frames(3, seed=4))
    ours = augment(images, "none", None).numpy()
    ref = np.stack([center_crop(img) for img in images.numpy()])
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_random_crops_and_colour_jitter_are_seeded_and_stay_in_range():
    images = torch.from_numpy(smooth_frames(4))
    a = augment(images, "crop+color", torch.Generator().manual_seed(0))
    b = augment(images, "crop+color", torch.Generator().manual_seed(0))
    c = augment(images, "crop", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == images.shape
    assert not torch.equal(c, augment(images, "none", None))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_hsv_round_trip(rgb):
    x = torch.tensor([rgb], dtype=torch.float64)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-9, rtol=0)


def _train(pack: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "train", "policy", "--data", str(pack), "--batch-size", "2",
                           "--warmup", "2", "--augment", "crop+color", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_trainer_sizes_its_schedule_from_the_budget_after_warm_up(pack, tmp_path):
    from bench.harness.train.policy import BCConfig, train_policy

    ticks = itertools.count()
    clock = lambda: 0.1 * next(ticks)  # noqa: E731  (a clock that advances per reading: load-independent)
    cfg = BCConfig(data=[str(pack)], steps=0, budget_s=10, size_after=2, size_steps=3, batch_size=2, warmup=2,
                   augment="crop+color", eval_every=10, save_every=1000)
    train_policy(cfg, tmp_path / "run", log=lambda m: None, clock=clock)
    summary = json.loads((tmp_path / "run" / "training.json").read_text())
    sized = summary["schedule"]["sized_from_budget"]
    assert sized["timed_steps"] == [3, 5] and summary["step"] == summary["schedule"]["steps"] > 5
    assert sized["eval_s"] > 0 and sized["checkpoint_s"] > 0  # periodic costs are part of the sizing
    assert summary["complete"] and not summary["stopped_by_budget"]
    held = (tmp_path / "run" / "heldout.csv").read_text().splitlines()
    assert held[0] == "step,ce,token_acc," + ",".join(f"bin_err_{d}" for d in
                                                       ("x", "y", "z", "roll", "pitch", "yaw", "gripper"))
    assert summary["held_out"][-1]["step"] == summary["step"] and summary["frames"] == {"train": 32, "held_out": 16}
    load_openvla(tmp_path / "run" / "checkpoint")


def test_a_killed_run_keeps_its_last_checkpoint_and_resumes(pack, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", "train", "policy", "--data", str(pack), "--batch-size", "2", "--steps", "400",
           "--save-every", "3", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "checkpoint" / "training.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads((out / "checkpoint" / "training.json").read_text())
    assert saved["step"] % 3 == 0 and not saved["complete"]
    load_openvla(out / "checkpoint")  # usable as it is
    r = _train(pack, out, "--steps", str(saved["step"] + 2), "--save-every", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed at step" in r.stdout


def test_fine_tuning_keeps_the_checkpoints_tokenizer_and_norm_stats(pack, tmp_path):
    r = _train(pack, tmp_path / "a", "--steps", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _train(pack, tmp_path / "b", "--steps", "2", "--init", str(tmp_path / "a" / "checkpoint"))
    assert r.returncode == 0, r.stdout + r.stderr
    a, _ = load_openvla(tmp_path / "a" / "checkpoint")
    b, _ = load_openvla(tmp_path / "b" / "checkpoint")
    assert a.cfg.norm_stats == b.cfg.norm_stats
    assert (tmp_path / "a" / "checkpoint" / "tokenizer.json").read_text() == (tmp_path / "b" / "checkpoint" / "tokenizer.json").read_text()


def test_device_script_runs_without_libero(pack, tmp_path):
    """scripts/train_on_device.sh on CPU, with every LIBERO-side module made unimportable, as on a GPU machine."""
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}:\n"
        "            raise ImportError(f'{name} is not installed on this machine')\n"
        "sys.meta_path.insert(0, _Block())\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "PYTHON": sys.executable, "DEVICE": "cpu", "STEPS": "3",
           "BUDGET_S": "0", "BATCH": "2", "WARMUP": "2", "RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out")}
    r = subprocess.run(["bash", "scripts/train_on_device.sh", str(pack)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["config.json", "heldout.csv", "loss.csv", "loss_curve.png", "model.safetensors", "tokenizer.json",
                     "train.log", "training.json"]
    assert all(p.stat().st_size < 16 * 2**20 for p in (tmp_path / "out").iterdir())
    load_openvla(tmp_path / "out")
    for packs in ([str(tmp_path)], [str(pack), str(tmp_path)]):  # one pack, or one of several, is not a pack
        r = subprocess.run(["bash", "scripts/train_on_device.sh", *packs], cwd=REPO, env=env, capture_output=True,
                           text=True)
        assert r.returncode == 2 and f"{tmp_path} is not a pack" in r.stderr


def test_device_script_defaults_to_every_committed_libero_object_pack():
    listing = subprocess.run(["bash", "-c", 'eval "$(sed -n "/^DEFAULT_PACKS=/,/)/p" scripts/train_on_device.sh)"; '
                              'printf "%s\\n" "${DEFAULT_PACKS[@]}"'], cwd=REPO, capture_output=True, text=True)
    defaults = listing.stdout.split()
    committed = sorted(str(p.parent.relative_to(REPO)) for p in (REPO / "data" / "packs").glob("libero_object*/pack.json"))
    assert sorted(defaults) == committed


def test_packed_seeds_are_read_per_suite_and_placement(tmp_path):
    from bench.harness.train.pack import packed_seeds

    fixed = "site-corrected"
    demos = [{"suite": "libero_object", "seed": 3, "placement": fixed}, {"suite": "libero_object", "seed": 100_004,
             "placement": fixed}, {"suite": "libero_spatial", "seed": 7, "placement": fixed},
             {"suite": "libero_object", "source": "official/demo_0"},
             {"suite": "libero_object", "seed": 9}]  # no placement recorded: made by LIBERO's own reset
    (tmp_path / "pack.json").write_text(json.dumps({"demos": demos}))
    assert packed_seeds(tmp_path, "libero_object", fixed) == {3, 100_004}
    assert packed_seeds(tmp_path, "libero_goal", fixed) == set()
    assert packed_seeds(tmp_path, "libero_object", "libero") == {9}


COMMITTED_PACKS = sorted(p.parent for p in (REPO / "data" / "packs").glob("*/pack.json"))


@pytest.mark.parametrize("pack", COMMITTED_PACKS, ids=lambda p: p.name)
def test_committed_pack_is_intact(pack):
    meta = json.loads((pack / "pack.json").read_text())
    verify_content(pack, meta)
    assert sum(d["frames"] for d in meta["demos"]) == meta["frames"]
    assert len(np.load(pack / "labels.npz")["actions"]) == meta["frames"]


def test_committed_expert_packs_hold_40_distinct_demos_per_task_of_object_and_spatial():
    seeds: dict[tuple[str, int], list[int]] = {}
    for pack in COMMITTED_PACKS:
        for demo in json.loads((pack / "pack.json").read_text())["demos"]:
            if "seed" in demo:  # expert demos (DAgger rollouts have no placement seed)
                assert demo["placement"] == "site-corrected"
                seeds.setdefault((demo["suite"], demo["seed"] // 100_000), []).append(demo["seed"])
    for suite in ("libero_object", "libero_spatial"):
        for task in range(10):
            task_seeds = seeds[(suite, task)]
            assert len(set(task_seeds)) == len(task_seeds) >= 40, (suite, task)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_abs_error_stats_equal_numpy_on_the_whole_difference(frames, seed, chunk):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (frames, 5, 4, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-12, 13, a.shape) * (rng.random(a.shape) < 0.3), 0, 255).astype(np.uint8)
    err = np.abs(a.astype(np.int16) - b.astype(np.int16))
    stats = abs_error_stats(a, b, chunk=chunk)
    assert stats["mean"] == pytest.approx(float(err.mean()), rel=1e-12)
    assert stats["p99"] == pytest.approx(float(np.percentile(err, 99)), abs=1e-9) and stats["max"] == int(err.max())
