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
    ],
)
def test_bad_input_is_one_line(args, message):
    r = run_bench(*args, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    out = (r.stdout + r.stderr).strip()
    assert message in " ".join(out.split())
    assert "Traceback" not in out


def test_ls_imports_neither_torch_nor_mujoco():
    code = "import sys; sys.argv=['bench','ls']; from bench.cli import app; app(standalone_mode=False); " \
           "print('HEAVY', [m for m in ('torch','mujoco','robosuite') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "baseline" in r.stdout and "libero_long" in r.stdout
    assert "HEAVY []" in r.stdout


def test_flops_7b_prints_paper_convention():
    r = run_bench("flops", "--policy", "openvla-7b", "--text-tokens", "28", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "n = 285" in r.stdout and "1.8670 T MACs" in r.stdout
