"""A fuzz pass over the CLI: every command and option with wrong types, out-of-range values, missing values,
unknown names, and missing or corrupt files. Every bad input must exit 2 with a message and no traceback.

The commands run in-process (``bench.cli.main.main``), so the ~300 inputs take about a minute; each is bounded by
an alarm, so a bad input that is accepted and starts real work fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.harness.openvla_policy import TINY_CHECKPOINT

COMMANDS = {  # option → bad values (a missing value is added for every option below)
    "run": {
        "--method": ["fastvv", ""], "--suite": ["libero_objet", ""], "--tasks": ["x", "", ",", "-1", "10", "0,99"],
        "--episodes-per-task": ["0", "-3", "abc", "51", "1.5"], "--max-steps": ["0", "x"],
        "--policy": ["gpt", ""], "--device": ["tpu", "cuda"], "--dtype": ["fp8", ""],
        "--set": ["k", "=1", "k=v"], "--seed": ["x", "1e3"], "--executor": ["slurm"], "--workers": ["0", "x"],
        "--gpus-per-worker": ["-1", "x"], "--checkpoint": ["/nonexistent", "{no_tokenizer}", "{truncated}",
                                                           "{bad_config}", "{empty_dir}", "{a_file}"],
        "--out": ["{a_file}"],
    },
    "flops": {"--policy": ["gpt5", ""], "--text-tokens": ["0", "x"]},
    "report": {"--paper": ["nope"], "--import-results": ["/nonexistent.csv", "{garbage}"]},
    "profile": {
        "--method": ["fastvv", "baseline,nope", ""], "--policy": ["gpt"], "--trace": ["/nonexistent", "{garbage}",
                                                                                   "{empty_dir}"],
        "--record": ["0", "x"], "--suite": ["nope"], "--task": ["x", "99", "-1"], "--warmup": ["-1"],
        "--repeat": ["0"], "--device": ["tpu"], "--dtype": ["int4"], "--checkpoint": ["/nonexistent", "{truncated}"],
        "--attention": ["flash", ""],
    },
    "train policy": {
        "--data": ["/nonexistent", "{garbage}", "{empty_dir}"], "--preset": ["openvla-7b", "huge"],
        "--steps": ["0", "x", "-1"], "--batch-size": ["0"], "--lr": ["-1", "0", "x"], "--seed": ["x"],
        "--save-every": ["0"], "--out": ["{a_file}"], "--init": ["/nonexistent", "{truncated}", "{no_tokenizer}"],
        "--augment": ["blur", ""], "--device": ["tpu", "cuda"], "--warmup": ["0"], "--min-lr-frac": ["2", "-1"],
        "--holdout": ["-1"], "--budget-s": ["0", "x"], "--eval-every": ["0"], "--log-every": ["0"],
    },
    "train lac": {
        "--policy": ["gpt"], "--checkpoint": ["/nonexistent"], "--suite": ["nope"], "--tasks": ["x", "", "99"],
        "--teacher-rollouts": ["0"], "--steps-per-rollout": ["1"], "--stage1-steps": ["-1"],
        "--stage2-steps": ["0"], "--lam": ["x", "-1"], "--tau": ["0", "-1"], "--tau-s": ["0"],
        "--motion": ["rgb"], "--teacher-data": ["/nonexistent.npz", "{garbage}"],
        "--data": ["/nonexistent", "{garbage}"], "--demos": ["0"], "--device": ["tpu"], "--ratio-fit-steps": ["-1", "x"],
    },
    "demos expert": {"--suite": ["nope", "libero_objet"], "--tasks": ["x", "", "99"], "--init-states": ["0", "51"],
                     "--out": ["{a_file}"]},
    "demos generate": {"--suite": ["nope"], "--tasks": ["x", "", "99"], "--per-task": ["0"],
                       "--noise": ["-0.1", "x"], "--out": ["{a_file}"], "--packed": ["/nonexistent", "{garbage}"],
                       "--placement": ["nowhere", ""]},
    "demos pack": {"--data": ["/nonexistent", "{garbage}", "{empty_dir}"], "--out": ["{a_file}"],
                   "--crf": ["-1", "52", "x"]},
    "demos dagger": {"--suite": ["nope", "simpler_widowx"], "--tasks": ["x", "", "99"], "--episodes-per-task": ["0"],
                     "--policy": ["gpt"], "--checkpoint": ["/nonexistent", "{truncated}"], "--takeover": ["-1"],
                     "--out": ["{a_file}"]},
}
REQUIRED = {  # valid values for required options and arguments, so each case varies one thing
    "check": ["--baseline", "{run}", "--candidate", "{run}"],
    "train policy": ["--data", "{demo}"],
    "demos pack": ["--data", "{demo}", "--out", "{empty_dir}/pack"],
}


def whole_commands() -> list[list[str]]:
    """Inputs that are not one option's value: unknown commands/options, arguments, files."""
    return [
        ["rnu"], ["train", "polcy"], ["demos", "nope"], ["ls", "extra"], ["run", "--bogus"], ["run", "positional"],
        ["report"], ["report", "/nonexistent/run"], ["report", "{empty_dir}"], ["report", "{garbage}"],
        ["report", "{bad_run}"], ["compare"], ["compare", "{run}"], ["compare", "/nonexistent", "{run}"],
        ["compare", "{run}", "{bad_run}"], ["compare", "{run}", "{bad_manifest}"], ["compare", "{run}", "{other_run}"],
        ["compare", "{run}", "{empty_dir}"], ["check"], ["check", "--baseline", "{run}"],
        ["check", "--baseline", "{run}", "--candidate", "/nonexistent"],
        ["check", "--baseline", "{run}", "--candidate", "{other_run}"],
        ["check", "--baseline", "{run}", "--candidate", "{run}", "--alpha", "2"],
        ["check", "--baseline", "{run}", "--candidate", "{run}", "--alpha", "0"],
        ["check", "--baseline", "{run}", "--candidate", "{run}", "--alpha", "x"],
        ["check", "--baseline", "{run}", "--candidate", "{run}", "--max-errors", "-1"],
        ["check", "--baseline", "{run}", "--candidate", "{run}", "--max-flops-increase", "-2"],
        ["check", "--baseline", "{run}", "--candidate", "{run}", "--max-latency-increase", "x"],
        ["train", "policy"], ["train", "lac", "--data", "{demo}", "--teacher-data", "{garbage}"],
        ["profile", "--trace", "{garbage}", "--record", "3"],
    ]


def cases() -> list[list[str]]:
    out = whole_commands()
    for command, options in COMMANDS.items():
        words, required = command.split(), REQUIRED.get(command, [])
        for option, values in options.items():
            rest = [w for i, w in enumerate(required) if option not in required[i - 1 : i + 1]]
            out += [[*words, *rest, option, v] for v in values]
            out.append([*words, *rest, option])  # the value is missing
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    from tests.conftest import fake_demo_file
    from tests.test_stats import write_run

    root = tmp_path_factory.mktemp("fuzz")
    f = {"empty_dir": root / "empty", "a_file": root / "a_file.txt", "garbage": root / "garbage.bin"}
    f["empty_dir"].mkdir()
    f["a_file"].write_text("not a directory\n")
    f["garbage"].write_bytes(np.random.default_rng(0).bytes(4096))
    for name, mutate in (("no_tokenizer", lambda d: (d / "tokenizer.json").unlink()),
                         ("truncated", lambda d: _truncate(d / "model.safetensors")),
                         ("bad_config", lambda d: (d / "config.json").write_text('{"text_config": 3}'))):
        f[name] = root / name
        shutil.copytree(TINY_CHECKPOINT, f[name])
        mutate(f[name])
    f["run"] = write_run(root / "run", [True] * 5)
    f["other_run"] = write_run(root / "other_run", [True] * 5, suite="libero_spatial")
    f["bad_run"] = root / "bad_run"
    f["bad_run"].mkdir()
    (f["bad_run"] / "episodes.jsonl").write_text("{not json\n[1, 2]\n")
    (f["bad_run"] / "manifest.json").write_text(json.dumps({"spec": {}}))
    f["bad_manifest"] = write_run(root / "bad_manifest", [True] * 5)
    (f["bad_manifest"] / "manifest.json").write_text("{truncated")
    f["demo"] = root / "demos" / "task_demo.hdf5"
    fake_demo_file(f["demo"])
    return {k: str(v) for k, v in f.items()}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class TookTooLong(Exception):
    pass


def _alarm(signum, frame):
    raise TookTooLong


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    from bench.cli.main import main

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    sys.argv = ["bench", *argv]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except TookTooLong:
        code = -1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_every_bad_input_exits_2_without_a_traceback(files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders (reports/, results/) must not land in the repo
    failures, tried = [], 0
    for case in cases():
        argv = [a.format(**files) for a in case]
        code, out = run_in_process(argv, capsys)
        tried += 1
        if code != 2 or "Traceback" in out or not out.strip():
            failures.append(f"bench {' '.join(case)} → exit {code}: {' | '.join(out.strip().splitlines()[-2:])}")
    with capsys.disabled():
        print(f"\nCLI fuzz: {tried} bad inputs tried, {len(failures)} not answered with exit 2")
    assert not failures, "\n".join(failures)
