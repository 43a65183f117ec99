"""The ``bench`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.common import console, parse_sets, parse_tasks, typer_app
from bench.cli.demos import demos_app
from bench.core.errors import BenchError
from bench.harness.registry import METHODS, POLICIES, SUITES

app = typer_app("Benchmark inference acceleration methods for VLA policies (OpenVLA and CogACT architectures, LIBERO).",
                add_completion=False, pretty_exceptions_enable=False)
DEFAULT_OUT = Path("results/runs")


COMPILE_HELP = ("torch.compile the decode step and the prefill layers (CUDA graphs on a GPU; edited row counts padded "
                "to 32-row buckets); the first steps compile; tokens equal eager within float tolerance")


@app.command()
def run(
    method: Annotated[str, typer.Option(help="acceleration method (see `bench ls`)")] = "baseline",
    suite: Annotated[str, typer.Option(help="task suite, e.g. libero_object, libero_long")] = "libero_object",
    tasks: Annotated[str, typer.Option(help="'all' or task ids, e.g. 0,3")] = "all",
    episodes_per_task: Annotated[int, typer.Option(min=1, help="episode i uses official init state i")] = 50,
    max_steps: Annotated[int | None, typer.Option(min=1, help="policy steps (default: the suite protocol)")] = None,
    policy: Annotated[str, typer.Option(help="policy name (see `bench ls`)")] = "tiny-openvla",
    checkpoint: Annotated[str | None, typer.Option(help="HF-format checkpoint directory")] = None,
    out: Annotated[Path, typer.Option(help="root of run directories")] = DEFAULT_OUT,
    video: Annotated[bool, typer.Option(help="write an mp4 per episode")] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    dtype: Annotated[str, typer.Option(help="fp32 | bf16 | fp16")] = "fp32",
    set_: Annotated[list[str], typer.Option("--set", help="method hyper-parameter key=value (repeatable)")] = [],  # noqa: B006
    retry_errors: Annotated[bool, typer.Option(help="re-run episodes recorded as errors")] = False,
    seed: Annotated[int, typer.Option(help="global seed (policy side; env seeding follows the protocol)")] = 7,
    executor: Annotated[str, typer.Option(help="local (in-process) | ray (episodes on Ray actors)")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Ray actors (each loads the policy once)")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs per Ray actor (0: CPU)")] = 0.0,
    address: Annotated[str | None, typer.Option(help="Ray cluster: auto | HOST:PORT (default: a local cluster)")] = None,
    compiled: Annotated[bool, typer.Option("--compile/--no-compile", help=COMPILE_HELP)] = False,
) -> None:
    """Run (or resume) episodes of METHOD on SUITE; results are appended to a run directory."""
    from bench.cli.run import run_command

    run_command(method=method, suite=suite, tasks=parse_tasks(tasks), episodes_per_task=episodes_per_task,
                max_steps=max_steps, policy=policy, checkpoint=checkpoint, out=out, video=video, device=device,
                dtype=dtype, params=parse_sets(set_), retry_errors=retry_errors, seed=seed, console=console,
                executor=executor, workers=workers, gpus_per_worker=gpus_per_worker, address=address,
                compiled=compiled)


@app.command("ls")
def list_registered() -> None:
    """List methods, suites and policies."""
    for title, reg in (("methods", METHODS), ("suites", SUITES), ("policies", POLICIES)):
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        for e in reg.entries():
            aliases = reg.aliases_of(e.name)
            table.add_row(f"[bold]{e.name}[/]" + (f" ({', '.join(aliases)})" if aliases else ""), e.summary)
        console.print(table)


@app.command()
def flops(
    policy: Annotated[str, typer.Option(help="model preset: openvla-7b | tiny | cogact-small | cogact-base | cogact-large | tiny-cogact")] = "openvla-7b",
    text_tokens: Annotated[int, typer.Option(min=1, help="prompt tokens after BOS (OpenVLA: n = 1 + 256 + this; CogACT: + 2)")] = 28,
) -> None:
    """MACs/FLOPs breakdown of one baseline policy step (meta device: no weights needed)."""
    from bench.core.errors import unknown_name
    from bench.core.models.accounting import cogact_step_macs, policy_step_macs
    from bench.core.models.presets import COGACT_PRESETS, PRESETS

    if policy not in {*PRESETS, *COGACT_PRESETS, "tiny-openvla"}:
        raise unknown_name("model preset", policy, [*PRESETS, *COGACT_PRESETS])
    if policy in COGACT_PRESETS:
        meter, n = cogact_step_macs(policy, text_tokens), 1 + 256 + text_tokens + 2
        what = "1 prefill (prompt + empty + cognition token) + DiT × 10 DDIM steps × CFG batch 2"
    else:
        name = "tiny" if policy in ("tiny", "tiny-openvla") else policy
        meter, n = policy_step_macs(name, text_tokens), 1 + 256 + text_tokens
        what = "1 prefill + 6 decode steps"
    r = meter.report()
    console.print(f"[bold]{policy}[/] one policy step, batch 1, prefill n = {n} tokens, {what}")
    console.print(f"paper convention (LLM decoder layers, prefill only, 4nd²+2n²d+3ndm): "
                  f"[bold]{r['paper_prefill_macs'] / 1e12:.4f} T MACs[/] (the papers' \"TFLOPs\")")
    table = Table("region", "MACs", "FLOPs (2·MAC)", "share")
    for key in sorted(k for k in r if k.startswith("macs_") and k != "macs_total"):
        table.add_row(key[5:], f"{r[key] / 1e9:,.2f} G", f"{2 * r[key] / 1e9:,.2f} G", f"{r[key] / r['macs_total']:.1%}")
    table.add_row("[bold]total[/]", f"{r['macs_total'] / 1e9:,.2f} G", f"{r['flops_total'] / 1e9:,.2f} G", "100%")
    console.print(table)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories (or roots containing them)")],
    out: Annotated[Path, typer.Option(help="output folder for tables and plots")] = Path("reports"),
    paper: Annotated[str | None, typer.Option(help="also regenerate a paper's tables, e.g. lac")] = None,
    policy: Annotated[str | None, typer.Option(help="policy whose runs fill the paper tables")] = None,
    import_results: Annotated[Path | None, typer.Option(help="CSV table,row,column,value of external results")] = None,
) -> None:
    """Summarise runs (success with Wilson 95% CI, latency, MACs) → Markdown, CSV, plots; --paper: its tables."""
    from bench.analysis.report import write_summary

    write_summary(run_dirs, out, console)
    if paper:
        from bench.analysis.paper_report import write_paper_tables

        written = write_paper_tables(paper, run_dirs, out, policy, import_results)
        console.print(f"wrote {len(written)} paper-table files to {out} ({paper}_table1..5 .md/.tex/.csv)")


@app.command()
def profile(
    method: Annotated[str, typer.Option(help="method(s): a name, comma-separated names, or 'all'")] = "all",
    policy: Annotated[str, typer.Option(help="policy name")] = "tiny-openvla",
    checkpoint: Annotated[str | None, typer.Option(help="HF-format checkpoint directory")] = None,
    random_weights: Annotated[bool, typer.Option(help="build the policy's preset with random weights (latency only)")] = False,
    trace: Annotated[Path | None, typer.Option(help="frame trace: a trace.npz or a directory holding one")] = None,
    record: Annotated[int | None, typer.Option(min=1, help="record a new trace of N steps from a real LIBERO rollout")] = None,
    suite: Annotated[str, typer.Option(help="suite to record from")] = "libero_object",
    task: Annotated[int, typer.Option(help="task to record from")] = 0,
    warmup: Annotated[int, typer.Option(min=0, help="warm-up steps per method")] = 5,
    repeat: Annotated[int, typer.Option(min=1, help="replays of the trace per method")] = 2,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    dtype: Annotated[str, typer.Option(help="fp32 | bf16 | fp16")] = "fp32",
    out: Annotated[Path, typer.Option(help="output folder")] = Path("reports/profile"),
    compiled: Annotated[bool, typer.Option("--compile/--no-compile", help=COMPILE_HELP)] = False,
    attention: Annotated[str, typer.Option(help="sdpa (the harness default) | eager (the papers' convention: HF eager attention, as output_attentions=True runs it)")] = "sdpa",
) -> None:
    """Performance mode: replay a recorded LIBERO frame trace through each method; latency percentiles + MACs,
    the paper's prefill region beside the end-to-end step, a roofline bound per region and host reads per step."""
    from bench.cli.profile import profile_command

    profile_command(methods=method, policy=policy, checkpoint=checkpoint, random_weights=random_weights, trace=trace,
                    record=record, suite=SUITES.resolve(suite).name, task=task, warmup=warmup, repeat=repeat,
                    device=device, dtype=dtype, out=out, console=console, compiled=compiled,
                    attention=attention)


train_app = typer_app("Train the tiny policy (behaviour cloning) or LAC's modules.")
app.add_typer(train_app, name="train")
app.add_typer(demos_app, name="demos")


@train_app.command("policy")
def train_policy_command(
    data: Annotated[list[str], typer.Option(help="a pack folder (bench demos pack) or LIBERO-layout .hdf5 demos (repeatable)")],
    preset: Annotated[str, typer.Option(help="model preset to train from scratch")] = "tiny",
    init: Annotated[str | None, typer.Option(help="fine-tune this checkpoint instead (keeps its tokenizer and norm stats)")] = None,
    steps: Annotated[int, typer.Option(min=0, help="optimizer steps (the schedule); 0: size it from --budget-s")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, warm-up then cosine)")] = 3e-4,
    warmup: Annotated[int, typer.Option(min=1, help="linear warm-up steps")] = 100,
    min_lr_frac: Annotated[float, typer.Option(min=0, max=1, help="the cosine ends at this share of --lr")] = 0.1,
    augment: Annotated[str, typer.Option(help="none | crop | crop+color (OpenVLA's crop and colour jitter)")] = "crop",
    holdout: Annotated[int, typer.Option(min=0, help="demos per instruction held out for per-dimension metrics")] = 1,
    seed: Annotated[int, typer.Option()] = 0,
    save_every: Annotated[int, typer.Option(min=1, help="steps between saves of train_state.pt and checkpoint/")] = 100,
    eval_every: Annotated[int, typer.Option(min=1, help="steps between held-out evaluations")] = 500,
    log_every: Annotated[int, typer.Option(min=1, help="steps between loss.csv rows (each reads the loss off the device)")] = 1,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast [default: on for CUDA]")] = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the training forward")] = False,
    budget_s: Annotated[float | None, typer.Option(min=1, help="wall-clock budget in seconds: stop (saved) when it is spent")] = None,
    out: Annotated[Path, typer.Option(help="output folder (checkpoint/, loss.csv, heldout.csv, training.json)")] = Path("results/train/policy"),
) -> None:
    """Behaviour cloning (action-token CE) on CPU or CUDA; resumable; writes an HF-format checkpoint."""
    from bench.harness.train.policy import BCConfig, train_policy

    if preset != "tiny" and init is None:
        raise BenchError(f"only the 'tiny' preset is trainable from scratch here; got {preset!r}")
    if not lr > 0:
        raise BenchError(f"--lr must be positive; got {lr}")
    cfg = BCConfig(data=data, preset=preset, init=init, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                   min_lr_frac=min_lr_frac, augment=augment, holdout=holdout, seed=seed, save_every=save_every,
                   eval_every=eval_every, log_every=log_every, device=device, bf16=bf16, compile=compile,
                   budget_s=budget_s)
    final = train_policy(cfg, out, log=lambda m: console.print(m, highlight=False))
    console.print(f"wrote {final} (use it with --checkpoint {final}), {out / 'loss_curve.png'}")


@train_app.command("lac")
def train_lac_command(
    policy: Annotated[str, typer.Option(help="frozen VLA policy")] = "tiny-openvla",
    checkpoint: Annotated[str | None, typer.Option(help="HF-format checkpoint directory")] = None,
    suite: Annotated[str, typer.Option(help="LIBERO suite for teacher rollouts")] = "libero_object",
    tasks: Annotated[str, typer.Option(help="task ids for teacher rollouts")] = "0,1,2,3",
    teacher_rollouts: Annotated[int, typer.Option(min=1, help="teacher mode: episodes (full-compute rollouts)")] = 8,
    steps_per_rollout: Annotated[int, typer.Option(min=2, help="policy steps recorded per rollout")] = 30,
    stage1_steps: Annotated[int, typer.Option(min=0, help="Stage I optimizer steps (0: skip Stage I)")] = 300,
    stage2_steps: Annotated[int, typer.Option(min=1, help="Stage II optimizer steps")] = 300,
    lam: Annotated[float, typer.Option(help="λ: weight of the cache-ratio reward")] = 0.2,
    tau: Annotated[float, typer.Option(help="Gumbel-softmax temperature")] = 1.0,
    tau_s: Annotated[float, typer.Option(help="soft-mask temperature")] = 0.05,
    motion: Annotated[str, typer.Option(help="flow | language")] = "flow",
    teacher_data: Annotated[str, typer.Option(help="reuse an earlier teacher.npz")] = "",
    data: Annotated[list[str] | None, typer.Option(help="demo mode: LIBERO-layout demo file or folder (repeatable); "
                                                        "targets are the demos' actions instead of the policy's")] = None,
    demos: Annotated[int, typer.Option(min=1, help="demo mode: demos to take a window of --steps-per-rollout frames from")] = 8,
    ratio_fit_steps: Annotated[int, typer.Option(min=0, help="predictor fit to each pair's best candidate ratio under "
                                                            "the Stage II loss (0: the paper's two stages only)")] = 300,
    out: Annotated[Path, typer.Option(help="output folder (checkpoints, curves, lac.safetensors)")] = Path("results/train/lac"),
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Stage I (attention alignment), Stage II (end to end, soft-mix KV), then the ratio fit; resumable."""
    from bench.cli.run import resolve_tasks
    from bench.harness.spec import resolve_device
    from methods.lac.train import LACTrainConfig, train_lac
    from methods.lac.train_data import SaliencyProbe

    if motion not in ("flow", "language"):
        raise BenchError(f"--motion takes flow or language; got {motion!r}")
    if lam < 0 or tau <= 0 or tau_s <= 0:
        raise BenchError(f"--lam must be ≥ 0 and --tau, --tau-s > 0; got {lam}, {tau}, {tau_s}")
    if teacher_data and not Path(teacher_data).is_file():
        raise BenchError(f"--teacher-data {teacher_data} does not exist (omit it to collect teacher data)")
    suite_name = SUITES.resolve(suite).name
    task_ids = resolve_tasks(SUITES.load(suite_name)(suite_name), parse_tasks(tasks))
    steering = SaliencyProbe()  # full compute that also reports layer-15 saliency for the teacher data
    the_policy = POLICIES.load(POLICIES.resolve(policy).name)(POLICIES.resolve(policy).name, checkpoint, steering,
                                                                  suite_name, device=resolve_device(device))
    cfg = LACTrainConfig(suite=suite_name, tasks=task_ids, teacher_rollouts=teacher_rollouts,
                         steps_per_rollout=steps_per_rollout, stage1_steps=stage1_steps, stage2_steps=stage2_steps,
                         lam=lam, tau=tau, tau_s=tau_s, motion=motion, stage1=stage1_steps > 0,
                         teacher_data=teacher_data, data=data or [], demos=demos, ratio_fit_steps=ratio_fit_steps)
    final = train_lac(the_policy, cfg, out, log=lambda m: console.print(m, highlight=False))
    console.print(f"wrote {final}, {out / 'loss_curves.png'}, {out / 'train_config.json'}")


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="run directory (or episodes.jsonl)")],
    run_b: Annotated[Path, typer.Argument(help="run directory (or episodes.jsonl)")],
) -> None:
    """Paired comparison of two runs on their shared episode keys (exact McNemar, Wilson CIs, cost ratios)."""
    from bench.analysis.compare import comparison_rows, load_run

    a, b = load_run(run_a), load_run(run_b)
    table = Table("", "A", "B")
    for row in comparison_rows(a, b):
        table.add_row(*row)
    console.print(f"A = {run_a}\nB = {run_b}")
    console.print(table)


@app.command()
def check(
    baseline: Annotated[Path, typer.Option(help="reference run directory or episodes.jsonl")],
    candidate: Annotated[Path, typer.Option(help="candidate run directory")],
    alpha: Annotated[float, typer.Option(help="significance level of the success-drop test, in (0, 1)")] = 0.05,
    max_flops_increase: Annotated[float | None, typer.Option(min=-1, help="fail if paper prefill MACs grow more, e.g. 0.05 "
                                                                        "(negative: require a saving)")] = None,
    max_latency_increase: Annotated[float | None, typer.Option(min=-1, help="fail if median step latency grows more")] = None,
    max_errors: Annotated[int, typer.Option(min=0, help="episodes allowed to end in errors")] = 0,
) -> None:
    """Regression gate: exit 1 on a significant success drop or a metric regression, 0 otherwise (2: bad input)."""
    from bench.analysis.compare import check as run_check
    from bench.analysis.compare import load_run

    if not 0 < alpha < 1:
        raise BenchError(f"--alpha is a significance level in (0, 1); got {alpha}")
    verdict = run_check(load_run(baseline), load_run(candidate), alpha, max_flops_increase, max_latency_increase,
                        max_errors)
    for line in verdict.reasons:
        console.print(f"[red]FAIL[/] {line}", highlight=False)
    for line in verdict.notes:
        console.print(f"[green]ok[/]   {line}", highlight=False)
    console.print("[red]regression[/]" if verdict.failed else "[green]no regression[/]")
    if verdict.failed:
        raise typer.Exit(1)


@app.command()
def fidelity(
    reference: Annotated[Path, typer.Option(help="reference folder (trace.npz + fidelity.json)")] = Path("results/reference/fidelity"),
    methods: Annotated[str, typer.Option(help="'all' (the reference's methods) or names, e.g. baseline,lac")] = "all",
    update: Annotated[bool, typer.Option(help="record the reference afresh instead of checking against it")] = False,
    trace: Annotated[Path | None, typer.Option(help="with --update: frame trace to record on (default: the folder's)")] = None,
    policy: Annotated[str, typer.Option(help="with --update: policy name")] = "tiny-openvla",
    checkpoint: Annotated[str | None, typer.Option(help="HF-format checkpoint directory (default: the reference's)")] = None,
    max_token_mismatch: Annotated[float, typer.Option(min=0, max=1, help="fraction of a method's tokens allowed to change")] = 0.0,
    action_atol: Annotated[float, typer.Option(min=0, help="allowed |Δ action| on steps whose tokens agree")] = 1e-5,
    compiled: Annotated[bool, typer.Option("--compile/--no-compile", help=COMPILE_HELP)] = False,
) -> None:
    """Fidelity gate: each method's greedy tokens and actions on a committed trace vs the reference (exit 1 on change)."""
    from bench.harness.fidelity import Tolerance, check_reference, record_reference

    if update:
        path = record_reference(reference, POLICIES.resolve(policy).name, checkpoint, methods, trace or reference)
        console.print(f"recorded {path}")
        return
    tol = Tolerance(max_token_mismatch, action_atol)
    results = check_reference(reference, tol, methods, checkpoint, compiled=compiled)
    table = Table("method", "tokens changed", "steps changed", "max |Δ action| (agreeing steps)",
                  "agreement with baseline", "verdict")
    for r in results:
        agree = "—" if r.agreement_with_baseline is None else f"{r.agreement_with_baseline:.1%}"
        table.add_row(r.method, f"{r.token_mismatches}/{r.tokens}", str(r.steps_changed), f"{r.max_action_diff:.2e}",
                      agree, "[red]CHANGED[/]" if r.failed(tol) else "[green]same[/]")
    console.print(table)
    failed = [r.method for r in results if r.failed(tol)]
    console.print(f"[red]fidelity regression[/]: {', '.join(failed)} (tolerance: {tol.max_token_mismatch:.1%} of "
                  f"tokens, |Δ action| ≤ {tol.action_atol:g})" if failed else
                  f"[green]fidelity ok[/]: {len(results)} methods reproduce the reference")
    if failed:
        raise typer.Exit(1)


def _cli_exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, exits, aborts) of click and of the click that typer ≥ 0.22 bundles (``typer._click``)."""
    import click

    usage: list[type] = [click.exceptions.ClickException]
    exits: list[type] = [click.exceptions.Exit]
    aborts: list[type] = [click.exceptions.Abort]
    if hasattr(typer, "TyperException"):  # the bundled click's ClickException derives from it
        usage.append(typer.TyperException)
    exits.append(typer.Exit)
    aborts.append(typer.Abort)
    return tuple(usage), tuple(exits), tuple(aborts)


INTERRUPTED = "interrupted: finished episodes are saved; rerun the same command to resume."


def main() -> None:
    """Exit codes: 0 ok, 1 a regression found by ``bench check`` or an unexpected bug, 2 bad input (one line),
    130 interrupted (Ctrl-C)."""
    usage, exits, aborts = _cli_exception_types()
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of raising it
        if code == 130:  # typer turns a KeyboardInterrupt outside a run loop into Exit(130)
            console.print(INTERRUPTED)
        if isinstance(code, int) and code:
            sys.exit(code)
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print(INTERRUPTED)
        sys.exit(130)
    except exits as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # a path the user gave that cannot be created or read (a file where a folder goes, …)
        where = f": {exc.filename}" if exc.filename else ""
        console.print(f"[red]error:[/] {exc.strerror or exc}{where}", highlight=False)
        sys.exit(2)
    except usage as exc:
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except aborts:
        console.print(INTERRUPTED)
        sys.exit(130)
    except Exception as exc:  # a bug: one line unless BENCH_DEBUG is set
        if os.environ.get("BENCH_DEBUG"):
            raise
        console.print(f"[red]error:[/] {type(exc).__name__}: {exc} (set BENCH_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)
