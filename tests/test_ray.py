"""Ray executor on a local 2-worker CPU cluster: same records as the local executor; a killed worker loses nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import ray  # noqa: F401  (installed with the test extra: a missing Ray must fail, not skip)

from tests.conftest import ROOT, run_bench

pytestmark = pytest.mark.slow


def records(out):
    (f,) = list(out.rglob("episodes.jsonl"))
    return sorted((json.loads(x) for x in f.read_text().splitlines()), key=lambda r: r["key"])


def test_ray_records_equal_local_records(tmp_path):
    args = ["run", "--method", "vla-cache", "--suite", "libero_object", "--tasks", "0", "--episodes-per-task", "3",
            "--max-steps", "4"]
    local = run_bench(*args, "--out", str(tmp_path / "local"))
    ray_run = run_bench(*args, "--executor", "ray", "--workers", "2", "--out", str(tmp_path / "ray"))
    assert local.returncode == 0 and ray_run.returncode == 0, ray_run.stderr[-2000:]
    a, b = records(tmp_path / "local"), records(tmp_path / "ray")
    fields = ("key", "success", "steps", "actions_sha1", "status")
    assert [[r[f] for f in fields] for r in a] == [[r[f] for f in fields] for r in b]
    for ra, rb in zip(a, b, strict=True):  # frame-dependent method statistics agree too
        assert ra["summary"]["static_tokens_mean"] == rb["summary"]["static_tokens_mean"]
        assert ra["summary"]["paper_prefill_macs_mean"] == rb["summary"]["paper_prefill_macs_mean"]
    (run_a,), (run_b,) = (list((tmp_path / d).rglob("manifest.json")) for d in ("local", "ray"))
    assert run_a.parent.name == run_b.parent.name  # the executor is not part of the run's identity


def test_killed_worker_is_retried_without_duplicates(tmp_path):
    args = ["run", "--suite", "libero_object", "--tasks", "1", "--episodes-per-task", "4", "--max-steps", "25",
            "--executor", "ray", "--workers", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    killed = None
    while time.time() < deadline and killed is None and proc.poll() is None:
        time.sleep(0.5)
        files = list(tmp_path.rglob("steps.jsonl"))
        pids = subprocess.run(["pgrep", "-f", "ray::EpisodeWorker"], capture_output=True, text=True).stdout.split()
        if files and len(pids) >= 2:  # workers are mid-episode: kill one of them
            killed = int(pids[0])
            os.kill(killed, signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert killed is not None, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    recs = records(tmp_path)
    assert [r["key"] for r in recs] == ["1:0", "1:1", "1:2", "1:3"]
    assert all(r["status"] == "ok" and r["steps"] == 25 for r in recs)
