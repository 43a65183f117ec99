"""LIBERO suites under the OpenVLA reference protocol (run_libero_eval.py, openvla@c8f03f4).

Protocol: one env per task, ``env.seed(0)`` once, then episode i = i-th ``reset()`` followed by
``set_init_state(init_states[i])``; 10 wait steps with ``[0,0,0,0,0,0,-1]``; success = first ``done``.

Fixture poses (cabinets, stoves) are re-sampled from NumPy's *global* RNG on every hard reset and are not
part of the init state, so episode i depends on how many resets came before it. To give episode i the
reference's fixtures however episodes are split or resumed, a task replays the reset chain: it seeds once,
and before episode i performs the missing ``reset()`` calls. The RNG state after each reset is saved and
restored before the next one, so nothing the policy or the env does during an episode can shift it
(``tests/test_libero.py`` checks the reference loop consumes no global RNG inside episodes either).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bench.core.errors import BenchError
from bench.core.interrupt import raise_if_interrupted
from envs.libero_placement import PLACEMENTS, correct_site_placements
from envs.suite import EvalProtocol

MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
WAIT_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
CAMERA = "agentview"  # the only camera the OpenVLA policy reads; the wrist camera is not rendered


def upright(frame: np.ndarray) -> np.ndarray:
    """LIBERO's OpenGL camera frame is upside down: rotate it 180° (what OpenVLA's eval and its videos do)."""
    return np.ascontiguousarray(frame[::-1, ::-1])


def reference_protocol(suite: str) -> EvalProtocol:
    return EvalProtocol(max_steps=MAX_STEPS[suite], wait_steps=10, wait_action=WAIT_ACTION, env_seed=0, image_size=256)


def _libero():
    """Import LIBERO only after the render backend is configured (MuJoCo reads MUJOCO_GL at import)."""
    from envs.render import configure_render_backend

    configure_render_backend()
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    return benchmark, get_libero_path, OffScreenRenderEnv


@dataclass
class LiberoTask:
    """One LIBERO task: a lazily built env plus the reset chain that fixes fixture placement."""

    suite: str
    task_id: int
    name: str
    instruction: str
    bddl_file: str
    init_states: np.ndarray
    protocol: EvalProtocol
    cameras: tuple[str, ...] = (CAMERA,)  # () = no rendering (the scripted expert needs none)
    hard_reset: bool = True  # the reference protocol; False skips the ~2 s model rebuild (expert, demos)

    def __post_init__(self) -> None:
        self._env: Any = None
        self._resets_done = 0
        self._rng_after_reset: Any = None

    @property
    def n_init_states(self) -> int:
        return len(self.init_states)

    def _new_env(self) -> None:
        self.close()
        _, _, env_cls = _libero()
        size = self.protocol.image_size
        self._env = env_cls(
            bddl_file_name=self.bddl_file, camera_heights=size, camera_widths=size,
            camera_names=list(self.cameras) or [CAMERA], use_camera_obs=bool(self.cameras),
            hard_reset=self.hard_reset,
        )
        self._env.seed(self.protocol.env_seed)  # seeds NumPy's global RNG, as the reference does
        self._resets_done = 0
        self._rng_after_reset = np.random.get_state()

    def _reset_once(self) -> None:
        np.random.set_state(self._rng_after_reset)
        _reset_retrying(self._env)
        self._resets_done += 1
        self._rng_after_reset = np.random.get_state()

    def reset(self, init_index: int) -> dict[str, np.ndarray]:
        """Put the env in episode ``init_index``'s start state (reset chain replayed as needed)."""
        if not 0 <= init_index < self.n_init_states:
            raise BenchError(f"{self.suite} task {self.task_id} has {self.n_init_states} init states; got {init_index}")
        if self._env is None or self._resets_done > init_index:
            self._new_env()
        while self._resets_done <= init_index:
            self._reset_once()
        self.resets_replayed = init_index  # informational: resets before this episode's own
        return self._env.set_init_state(self.init_states[init_index])

    def reset_random(self, seed: int, placement: str = "site-corrected") -> dict[str, np.ndarray]:
        """A fresh placement sampled from the BDDL regions (seeded), not one of the official init states.

        Demos start here so a policy is never trained on the states it is evaluated on. ``placement`` is
        ``site-corrected`` (objects in or on a fixture's region where the BDDL puts them) or ``libero`` (LIBERO's
        own reset, which drops them from ~0.9 m too high: ``envs/libero_placement.py``).
        """
        if placement not in PLACEMENTS:
            raise BenchError(f"placement must be one of {', '.join(PLACEMENTS)}; got {placement!r}")
        if self._env is None:
            self._new_env()
        np.random.seed(seed)
        obs = _reset_retrying(self._env, correct_sites=placement == "site-corrected")
        self._resets_done = 10**9  # the official reset chain must be replayed from scratch afterwards
        return obs

    def start(self, init_index: int | None, seed: int = 0, placement: str = "site-corrected") -> dict[str, np.ndarray]:
        """Reset (official init state ``init_index``, or a fresh ``placement`` seeded by ``seed`` when it is None),
        then the protocol's settle steps; returns the first observation a policy or the expert acts on."""
        obs = self.reset(init_index) if init_index is not None else self.reset_random(seed, placement)
        for _ in range(self.protocol.wait_steps):
            raise_if_interrupted()
            obs, _ = self.step(np.asarray(self.protocol.wait_action))
        return obs

    @property
    def env(self) -> Any:
        """The LIBERO ``OffScreenRenderEnv`` (its ``.env`` is the robosuite problem with the sim)."""
        return self._env

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        obs, _reward, done, _info = self._env.step(np.asarray(action, dtype=np.float64).tolist())
        return obs, bool(done)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def _reset_retrying(env: Any, correct_sites: bool = False) -> dict[str, np.ndarray]:
    """``ControlEnv.reset`` without its ``finally: continue``: retry on RandomizationError only (as it does,
    consuming the same RNG draws), so Ctrl-C and real errors propagate instead of looping forever.
    ``correct_sites`` re-places site-conditioned objects after each reset (a failed re-placement retries too)."""
    from robosuite.utils.errors import RandomizationError

    while True:
        raise_if_interrupted()
        try:
            obs = env.env.reset()
            if correct_sites and correct_site_placements(env.env):
                obs = env.env._get_observations(force_update=True)
            return obs
        except RandomizationError:
            continue


def instruction_words() -> list[str]:
    """Every word of every LIBERO task instruction (all 130 tasks): the tiny policy's word vocabulary."""
    from tokenizers import pre_tokenizers

    benchmark, _, _ = _libero()
    words: set[str] = set()
    for suite in MAX_STEPS:
        b = benchmark.get_benchmark_dict()[suite]()
        for i in range(b.n_tasks):
            words |= {w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(b.get_task(i).language.lower())}
    return sorted(words)


class LiberoSuite:
    """A LIBERO task suite (identity task order, 50 official init states per task)."""

    def __init__(self, name: str) -> None:
        if name not in MAX_STEPS:
            raise BenchError(f"unknown LIBERO suite {name!r}")
        self.name = name
        self.protocol = reference_protocol(name)

    @cached_property
    def _benchmark(self) -> Any:
        benchmark, _, _ = _libero()
        return benchmark.get_benchmark_dict()[self.name](task_order_index=0)

    def task_ids(self) -> list[int]:
        return list(range(self._benchmark.n_tasks))

    def n_init_states(self, task_id: int) -> int:
        return len(self._benchmark.get_task_init_states(task_id))

    def task(self, task_id: int, cameras: tuple[str, ...] = (CAMERA,), hard_reset: bool = True) -> LiberoTask:
        if task_id not in self.task_ids():
            raise BenchError(f"{self.name} has tasks 0..{self._benchmark.n_tasks - 1}; got {task_id}")
        _, get_libero_path, _ = _libero()
        t = self._benchmark.get_task(task_id)
        return LiberoTask(
            suite=self.name,
            task_id=task_id,
            name=t.name,
            instruction=t.language,
            bddl_file=os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file),
            init_states=np.asarray(self._benchmark.get_task_init_states(task_id)),
            protocol=self.protocol,
            cameras=cameras,
            hard_reset=hard_reset,
        )
