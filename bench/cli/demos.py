"""``bench demos …``: scripted-expert success sweeps and LIBERO-layout demo generation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import console, parse_tasks, typer_app
from bench.core.errors import BenchError

demos_app = typer_app("Scripted LIBERO expert: success sweeps, demonstration files and training packs.")
EXPERT_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
SuiteOption = Annotated[str, typer.Option(help="LIBERO suite")]
TasksOption = Annotated[str, typer.Option(help="'all' or task ids, e.g. 0,3")]


def _suite(name: str) -> str:
    from bench.harness.registry import SUITES

    resolved = SUITES.resolve(name).name
    if resolved not in EXPERT_SUITES:
        raise BenchError(f"the scripted expert runs on LIBERO suites {', '.join(EXPERT_SUITES)}; got {name!r}")
    return resolved


@demos_app.command("expert")
def expert_command(
    suite: SuiteOption = "libero_object",
    tasks: TasksOption = "all",
    init_states: Annotated[int, typer.Option(min=1, help="official init states per task (first N)")] = 50,
    out: Annotated[Path, typer.Option(help="folder for <suite>.jsonl and <suite>.csv")] = Path("results/expert"),
) -> None:
    """Measure the expert's success on the official init states (no rendering; resumable)."""
    from bench.analysis.report import summarize_expert_sweep
    from bench.cli.run import resolve_tasks, validate_episodes
    from bench.harness.demos.sweep import sweep
    from envs.libero import LiberoSuite

    name, task_ids = _suite(suite), parse_tasks(tasks)
    the_suite = LiberoSuite(name)
    validate_episodes(the_suite, resolve_tasks(the_suite, task_ids), init_states)
    table = summarize_expert_sweep(sweep(name, task_ids, init_states, out,
                                         progress=lambda m: console.print(m, highlight=False)))
    table.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(f"# Scripted expert on {name} (official init states)\n\n"
                                    + table.to_markdown(index=False, floatfmt=".3f") + "\n")
    console.print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    console.print(f"wrote {out / name}.{{jsonl,csv,md}}")


@demos_app.command("generate")
def generate_command(
    suite: SuiteOption = "libero_object",
    tasks: TasksOption = "all",
    per_task: Annotated[int, typer.Option(min=1, help="successful demos per task")] = 20,
    out: Annotated[Path, typer.Option(help="root folder; files go to <out>/<suite>/<task>_demo.hdf5")] = Path("results/demos"),
    noise: Annotated[float, typer.Option(min=0, help="σ of the executed-action perturbation (recorded actions are clean)")] = 0.05,
    wrist: Annotated[bool, typer.Option(help="also render obs/eye_in_hand_rgb (about 2× slower)")] = False,
    packed: Annotated[list[Path] | None, typer.Option(help="a committed pack whose demos count towards --per-task "
                                                           "and are not made again (repeatable)")] = None,
    placement: Annotated[str, typer.Option(help="site-corrected: objects in or on a fixture's region where the BDDL "
                                                "puts them; libero: LIBERO's own reset, which drops them from ~0.9 m "
                                                "too high (envs/libero_placement.py)")] = "site-corrected",
) -> None:
    """Write successful expert demos from fresh placements (never the official init states); resumable."""
    from bench.harness.demos.generate import SEEDS_PER_TASK, generate
    from bench.harness.train.pack import is_pack, packed_seeds
    from envs.libero_placement import PLACEMENTS

    for p in packed or []:
        if not is_pack(p):
            raise BenchError(f"--packed {p}: not a pack (no pack.json); packs are written by `bench demos pack`")
    if placement not in PLACEMENTS:
        raise BenchError(f"--placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    seeds = frozenset().union(*(packed_seeds(p, _suite(suite), placement) for p in packed or []))
    counts = generate(_suite(suite), parse_tasks(tasks), per_task, out, noise=noise, wrist=wrist, packed=seeds,
                      placement=placement, progress=lambda m: console.print(m, highlight=False))
    kept = sum(n for n, _ in counts.values())
    failed = sum(f for _, f in counts.values())
    in_packs = sum(s // SEEDS_PER_TASK in counts for s in seeds)
    console.print(f"{kept} successful demos ({in_packs} of them in packs; {failed} failed attempts discarded) "
                  f"under {out / _suite(suite)}")


@demos_app.command("pack")
def pack_command(
    data: Annotated[list[Path], typer.Option(help="LIBERO-layout .hdf5 demo file or folder (repeatable)")],
    out: Annotated[Path, typer.Option(help="pack folder (frames.mp4, labels.npz, pack.json, tokenizer.json)")],
    crf: Annotated[int, typer.Option(min=0, max=51, help="H.264 quality (lower: larger and closer to the frames)")] = 23,
) -> None:
    """Pack demos into a compact training set: frames after the evaluation image chain as H.264, actions, prompts."""
    from bench.core.models.presets import preset
    from bench.core.models.tokenizer import build_word_tokenizer
    from bench.harness.train.bc_data import read_demo_frames
    from bench.harness.train.pack import write_pack
    from envs.libero import instruction_words

    frames = read_demo_frames([str(d) for d in data], log=lambda m: console.print(m, highlight=False))
    cfg = preset("tiny")
    meta = write_pack(frames, out, build_word_tokenizer(instruction_words(), cfg.n_text_vocab, cfg.n_action_bins), crf=crf)
    c, mb = meta["codec"], sum(meta["bytes"].values()) / 2**20
    console.print(f"wrote {out}: {meta['frames']} frames of {len(meta['demos'])} demos ({', '.join(meta['suites'])}), "
                  f"{mb:.1f} MiB ({mb / len(meta['demos']):.3f} MiB per demo); H.264 crf {crf}: mean |error| "
                  f"{c['mean_abs_error']:.2f} levels, p99 {c['p99_abs_error']:.0f}, max {c['max_abs_error']}")


@demos_app.command("dagger")
def dagger_command(
    suite: SuiteOption = "libero_object",
    tasks: TasksOption = "all",
    episodes_per_task: Annotated[int, typer.Option(min=1, help="policy rollouts per task (fresh placements)")] = 2,
    policy: Annotated[str, typer.Option(help="the policy that acts (full compute)")] = "tiny-openvla",
    checkpoint: Annotated[str | None, typer.Option(help="HF-format checkpoint directory")] = None,
    takeover: Annotated[int, typer.Option(min=0, help="policy step at which the expert's recovery is tried")] = 100,
    out: Annotated[Path, typer.Option(help="root folder; files go to <out>/<suite>/<task>_demo.hdf5")] = Path("results/dagger"),
) -> None:
    """One DAgger round: the policy acts, the expert (phase from the scene) labels each state; resumable."""
    from bench.cli.run import resolve_tasks
    from bench.harness.demos.dagger import dagger_round, summarize
    from bench.harness.registry import POLICIES, build_method
    from envs.libero import LiberoSuite

    name, task_ids = _suite(suite), parse_tasks(tasks)
    resolve_tasks(LiberoSuite(name), task_ids)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    steering, _ = build_method("baseline", {})
    the_policy = POLICIES.load(policy)(policy, checkpoint, steering, name, device="cpu", dtype="fp32")
    rows = dagger_round(the_policy, name, task_ids, episodes_per_task, out, takeover=takeover,
                        progress=lambda m: console.print(m, highlight=False))
    s = summarize(rows)
    console.print(f"{s['episodes']} new episodes ({s['labelled_frames']} labelled frames): policy solved "
                  f"{s['policy_successes']}; the expert recovered from {s['expert_recoveries']}/{s['takeovers']} of the "
                  f"policy's step-{takeover} states; label phases {s['label_phases']}; files under {out / name}")
