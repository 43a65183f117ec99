"""Bad input: one clear line, non-zero exit, no traceback. `bench ls` stays light."""

import subprocess
import sys

import pytest

from tests.conftest import run_bench


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--suite", "libero_objet"], "Did you mean 'libero_object'"),
        (["run", "--method", "fastvv"], "unknown method 'fastvv'"),
        (["run", "--policy", "openvla-7b"], "needs --checkpoint DIR"),
        (["run", "--checkpoint", "/nonexistent"], "does not exist"),
        (["run", "--tasks", "0,x"], "--tasks takes"),
        (["run", "--tasks", "99"], "has tasks 0..9"),
        (["run", "--set", "k=v"], "takes no parameters"),
        (["run", "--dtype", "fp8"], "--dtype takes"),
        (["report", "/nonexistent/run"], "does not exist"),
        (["flops", "--policy", "gpt5"], "unknown model preset"),
        (["run", "--tasks", "0", "--episodes-per-task", "51"], "task 0 has 50 init states (0..49); asked for 51"),
        (["run", "--tasks", ""], "--tasks names no task"),
        (["run", "--tasks", ","], "--tasks names no task"),
        (["run", "--suite", "simpler_google_vm", "--policy", "tiny-cogact"], "SIMPLER needs simpler_env"),
        (["run", "--policy", "cogact-base"], "needs --checkpoint DIR (a CogACT run directory"),
    ],
)
def test_bad_input_is_one_line(args, message):
    r = run_bench(*args, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    out = (r.stdout + r.stderr).strip()
    assert message in " ".join(out.split())
    assert "Traceback" not in out


def test_ls_imports_neither_torch_nor_mujoco():
    code = "import sys; sys.argv=['bench','ls']; from bench.cli.main import app; app(standalone_mode=False); " \
           "print('HEAVY', [m for m in ('torch','mujoco','robosuite') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "baseline" in r.stdout and "libero_long" in r.stdout
    assert "HEAVY []" in r.stdout


def test_flops_7b_prints_paper_convention():
    r = run_bench("flops", "--policy", "openvla-7b", "--text-tokens", "28", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "n = 285" in r.stdout and "1.8670 T MACs" in r.stdout


def test_the_run_lock_is_taken_before_the_policy_loads(tmp_path, monkeypatch):
    """A second writer must meet the lock in a second, not after ~18 s of loading the env and the policy."""
    import bench.cli.run as rc
    from bench.core.errors import BenchError
    from bench.harness.store import RunStore

    events = []

    class LockedStore(RunStore):
        def __init__(self, run_dir):
            events.append("lock")
            raise BenchError(f"another bench process is writing {run_dir}; wait for it or kill it")

    monkeypatch.setattr(rc, "RunStore", LockedStore)
    monkeypatch.setattr(rc.PolicyRecipe, "build", lambda self: events.append("policy") or pytest.fail("loaded"))
    with pytest.raises(BenchError, match="another bench process"):
        rc.run_command(method="baseline", suite="libero_object", tasks=[0], episodes_per_task=1, max_steps=2,
                       policy="tiny-openvla", checkpoint=None, out=tmp_path, video=False, device="cpu", dtype="fp32",
                       params={}, retry_errors=False, seed=7, console=None)
    assert events == ["lock"]


def test_help_and_listings_say_only_what_exists():
    import dataclasses
    import re

    from bench.harness.registry import METHODS

    for entry in METHODS.entries():  # every key=value a summary shows is a real --set parameter
        config = getattr(METHODS.load(entry.name), "Config", None)
        names = {f.name for f in dataclasses.fields(config)} if config else set()
        for key in re.findall(r"\b(\w+)=", entry.summary):
            assert key in names, f"{entry.name}: summary names {key!r}; parameters are {sorted(names)}"
    top = run_bench("--help", timeout=60).stdout
    assert "CogACT" in top
    ls = run_bench("ls", timeout=60).stdout
    assert "k=2, ratio=0.5" in ls
    for name in ("tiny-cogact", "cogact-small", "cogact-base", "cogact-large", "simpler_google_vm", "simpler_google_va"):
        assert name in ls
    assert ls.count("needs simpler_env") == 2
    run_help = run_bench("run", "--help", timeout=60).stdout
    for option in ("--episodes-per-task", "--gpus-per-worker", "--retry-errors", "--executor"):
        assert option in run_help
    assert "…" not in run_help
