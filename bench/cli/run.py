"""`bench run`: resolve names into a run spec, build suite/method/policy, run missing episodes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.core.errors import BenchError
from bench.core.interrupt import deferred_interrupts
from bench.harness.registry import METHODS, POLICIES, SUITES, PolicyRecipe, build_method, policy_identity
from bench.harness.spec import RunSpec, episode_key, resolve_device
from bench.harness.store import RunStore, run_dir_for


class RunProgress:
    """A progress bar whose description carries the running success rate."""

    def __init__(self, console: Console, label: str) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=False)
        self.label = label
        self.successes = self.n = 0

    def start(self, total: int, already: int) -> None:
        self.task = self.bar.add_task(self.label, total=total, completed=already)
        self.bar.start()

    def advance(self, record: dict[str, Any]) -> None:
        self.n += 1
        self.successes += record["success"]
        note = " [red]error[/]" if record["status"] == "error" else ""
        self.bar.update(self.task, advance=1,
                        description=f"{self.label} success {self.successes}/{self.n} this session{note}")

    def stop(self) -> None:
        self.bar.stop()


def resolve_tasks(suite: Any, tasks: list[int] | None) -> list[int]:
    """The task ids to run (None: all), each checked against the suite."""
    all_tasks = suite.task_ids()
    bad = [t for t in tasks or [] if t not in all_tasks]
    if bad:
        raise BenchError(f"{suite.name} has tasks 0..{len(all_tasks) - 1}; got {bad}")
    return list(tasks) if tasks is not None else all_tasks


def validate_episodes(suite: Any, tasks: list[int], episodes_per_task: int) -> None:
    """Every planned episode needs an official init state (episode i uses init state i)."""
    for task_id in tasks:
        n = suite.n_init_states(task_id)
        if episodes_per_task > n:
            raise BenchError(f"{suite.name} task {task_id} has {n} init states (0..{n - 1}); "
                             f"asked for {episodes_per_task} episodes per task")


def run_command(*, method: str, suite: str, tasks: list[int] | None, episodes_per_task: int, max_steps: int | None,
                policy: str, checkpoint: str | None, out: Path, video: bool, device: str, dtype: str,
                params: dict[str, str], retry_errors: bool, seed: int, console: Console, executor: str = "local",
                workers: int = 2, gpus_per_worker: float = 0.0, address: str | None = None,
                compiled: bool = False) -> None:
    """Validate everything, take the run's lock, then load the policy and run what is missing.

    The order matters: bad input fails in a second with one line, and a second writer meets the lock before
    spending ~20 s loading the env and the policy.
    """
    suite_entry, method_entry, policy_entry = SUITES.resolve(suite), METHODS.resolve(method), POLICIES.resolve(policy)
    _, method_params = build_method(method_entry.name, params)
    if dtype not in ("fp32", "bf16", "fp16"):
        raise BenchError(f"--dtype takes fp32, bf16 or fp16; got {dtype!r}")
    if executor not in ("local", "ray"):
        raise BenchError(f"--executor takes local or ray; got {executor!r}")
    the_suite = SUITES.load(suite_entry.name)(suite_entry.name)
    run_tasks = resolve_tasks(the_suite, tasks)
    protocol = the_suite.protocol
    cap = ({str(t): the_suite.n_init_states(t) for t in run_tasks} if protocol.flags.get("cap_episodes") else {})
    if not cap:
        validate_episodes(the_suite, run_tasks, episodes_per_task)
    device = ("cuda" if gpus_per_worker > 0 else "cpu") if executor == "ray" else resolve_device(device)
    ckpt, policy_fingerprint = policy_identity(policy_entry.name, checkpoint)
    recipe = PolicyRecipe(policy_entry.name, str(ckpt) if ckpt else None, method_entry.name, params, suite_entry.name, device, dtype,
                          compiled)
    spec = RunSpec(
        suite=suite_entry.name,
        tasks=tuple(run_tasks),
        episodes_per_task=episodes_per_task,
        max_steps=max_steps or protocol.max_steps,
        policy=policy_entry.name,
        policy_fingerprint=policy_fingerprint,
        method=method_entry.name,
        method_params=method_params,
        protocol={**dataclasses.asdict(protocol), "max_steps_override": max_steps is not None,
                  "device": device, "dtype": dtype,
                  **({"compile": "decode+prefill"} if compiled else {}),  # absent when eager: old runs keep their hash
                  **({"episodes_cap": cap} if cap else {})},
        seed=seed,
    )
    from bench.harness.manifest import environment

    env_info = environment()
    manifest = {"spec": spec.to_dict(), "run_hash": spec.run_hash,
                "method": {"name": method_entry.name, "params": method_params}, "created": env_info}
    store = RunStore(run_dir_for(out, spec))  # the lock, before anything slow
    progress = RunProgress(console, f"{spec.suite}/{spec.method}")
    try:
        with deferred_interrupts():
            if executor == "local":
                from bench.harness.runner import execute

                the_policy = recipe.build()
                manifest["policy"] = the_policy.describe()
                result = execute(spec, the_suite, the_policy, store, manifest, env_info, video=video,
                                 retry_errors=retry_errors, progress=progress)
            else:
                from bench.harness.ray_runner import RayOptions, execute_ray

                options = RayOptions(workers=workers, gpus_per_worker=gpus_per_worker, address=address)
                result = execute_ray(spec, recipe, store, manifest, env_info, options, video=video,
                                     retry_errors=retry_errors, progress=progress)
    except KeyboardInterrupt:
        kept = len(store.finished() & {episode_key(*k) for k in spec.episode_keys()})
        raise BenchError(f"interrupted: {kept}/{len(spec.episode_keys())} episodes of this run are saved in "
                         f"{store.dir} (the one in flight is not); rerun the same command to resume",
                         exit_code=130) from None
    finally:
        progress.stop()
        store.close()
    rate = result.successes / result.finished if result.finished else 0.0
    console.print(f"ran {result.ran} episode(s); run has {result.finished}/{result.planned} finished, "
                  f"{result.successes} successes ({rate:.1%}), {result.errors} errors → {result.run_dir}")
