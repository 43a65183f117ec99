"""`bench run` end to end on the real simulator: rerun runs nothing, kill -9 mid-run loses nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_bench

pytestmark = pytest.mark.slow
ARGS = ["run", "--method", "baseline", "--suite", "libero_long", "--tasks", "0", "--episodes-per-task", "2",
        "--max-steps", "20"]


def records(out):
    files = list(out.rglob("episodes.jsonl"))
    assert len(files) == 1
    return [json.loads(x) for x in files[0].read_text().splitlines()]


def test_kill_mid_run_then_resume(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bench", *ARGS, "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.stat().st_size for p in tmp_path.rglob("episodes.jsonl")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 during the second episode
    proc.wait()
    assert len(records(tmp_path)) == 1

    r = run_bench(*ARGS, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "ran 1 episode(s)" in r.stdout
    recs = records(tmp_path)
    assert sorted(x["key"] for x in recs) == ["0:0", "0:1"]
    assert all(x["status"] == "ok" and x["steps"] == 20 for x in recs)

    again = run_bench(*ARGS, "--out", str(tmp_path))
    assert "ran 0 episode(s)" in again.stdout and len(records(tmp_path)) == 2
    invocations = next(iter(tmp_path.rglob("invocations.jsonl"))).read_text().splitlines()
    assert len(invocations) == 3  # every (re)start records its environment


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_ctrl_c_stops_promptly_keeps_records_and_resumes(tmp_path, executor):
    """A real SIGINT (to the process group, as a terminal's Ctrl-C) right after the first episode is recorded,
    i.e. while LIBERO resets for the next one, whose retry loop used to swallow it."""
    args = [*ARGS, "--episodes-per-task", "3", "--executor", executor, "--workers", "1", "--out", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.stat().st_size for p in tmp_path.rglob("episodes.jsonl")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.time()
    out, _ = proc.communicate(timeout=60)
    stopped_after = time.time() - sent
    assert proc.returncode == 130, out
    assert stopped_after < 15, f"took {stopped_after:.1f} s to stop"
    assert "interrupted: 1/3 episodes of this run are saved" in out and "rerun the same command" in out
    assert "Traceback" not in out
    (parquet,) = tmp_path.rglob("steps.parquet")
    import pandas as pd

    steps = pd.read_parquet(parquet)
    assert set(steps.key) == {"0:0"} and len(steps) == 20
    r = run_bench(*args)
    assert r.returncode == 0 and "ran 2 episode(s)" in r.stdout, r.stdout + r.stderr


def test_same_spec_same_records(tmp_path):
    """Greedy policy + protocol seeding: a rerun in a fresh directory reproduces actions exactly."""
    args = ["run", "--suite", "libero_object", "--tasks", "2", "--episodes-per-task", "1", "--max-steps", "8"]
    for sub, extra in (("a", ["--video"]), ("b", [])):
        assert run_bench(*args, *extra, "--out", str(tmp_path / sub)).returncode == 0
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    assert [x["actions_sha1"] for x in a] == [x["actions_sha1"] for x in b]
    (video,) = list((tmp_path / "a").rglob("videos/task02_ep00.mp4"))  # --video writes one mp4 per episode
    assert video.stat().st_size > 1000 and not list((tmp_path / "b").rglob("*.mp4"))


@pytest.mark.parametrize("method", ["fastv", "sparsevlm", "vla-cache", "lac", "lac-language"])
def test_methods_run_in_bench_run(tmp_path, method):
    args = ["run", "--method", method, "--suite", "libero_object", "--tasks", "0", "--episodes-per-task", "1",
            "--max-steps", "4", "--out", str(tmp_path)]
    r = run_bench(*args)
    assert r.returncode == 0, r.stderr
    (rec,) = records(tmp_path)
    assert rec["status"] == "ok" and rec["steps"] == 4
    assert rec["summary"]["visual_computed_mean_mean"] < 256 or method == "vla-cache"
    manifest = json.loads(next(iter(tmp_path.rglob("manifest.json"))).read_text())
    assert manifest["method"]["name"] == method and manifest["method"]["params"]
