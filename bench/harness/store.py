"""Append-only run store: manifest.json once, episodes.jsonl one fsynced line per finished episode.

Crash safety: a record is written only after its episode ends, with flush+fsync, so ``kill -9`` loses at
most the episode in flight. A torn last line (killed mid-write) of every append-only file is cut off when
the store is reopened. An exclusive lock stops two processes from writing the same run.

Attempts: each (re)start of a run is an invocation (a line of invocations.jsonl); an episode's step rows and
its record carry ``attempt`` = the invocation that ran it, so rows of an earlier attempt of the same key (a
retried error, or an attempt killed after its rows were written) are never mixed into the latest one.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError, reading
from bench.harness.spec import RunSpec

EPISODES = "episodes.jsonl"
MANIFEST = "manifest.json"
STEPS = "steps.jsonl"
INVOCATIONS = "invocations.jsonl"
APPEND_ONLY = (EPISODES, STEPS, INVOCATIONS)


def run_dir_for(out_root: Path, spec: RunSpec) -> Path:
    return out_root / spec.suite / spec.policy / spec.method / spec.run_hash


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of an append-only JSONL file, in write order (a torn final line is ignored)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_episodes(run_dir: Path) -> list[dict[str, Any]]:
    """Episode records (objects with a key); a line that parses but is no record is ignored like a torn one."""
    return [r for r in read_jsonl(Path(run_dir) / EPISODES) if isinstance(r, dict) and "key" in r]


def latest_by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record per episode key (a retried error is superseded by its retry)."""
    return {r["key"]: r for r in records}


def materialize_steps(run_dir: Path) -> Path | None:
    """Write steps.parquet from the append-only steps.jsonl: rows of finished episodes, last attempt only."""
    import pandas as pd

    run_dir = Path(run_dir)
    src = run_dir / STEPS
    latest = latest_by_key(read_episodes(run_dir))
    if not src.exists() or not latest:
        return None
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in read_jsonl(src):
        record = latest.get(row.get("key"))
        if record is not None and row.get("attempt") == record.get("attempt"):
            rows.setdefault(row["key"], []).append(row)
    # Runs written before attempts were recorded: the record's last ``steps`` rows are its own.
    kept = [r for key, rs in rows.items() for r in rs[len(rs) - latest[key]["steps"]:]]
    if not kept:
        return None
    out = run_dir / "steps.parquet"
    pd.DataFrame(kept).to_parquet(out, index=False)
    return out


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise BenchError(f"{run_dir} is not a run directory (no {MANIFEST})")
    with reading(path, "run manifest"):
        return json.loads(path.read_text())


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / ".lock", "w")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchError(f"another bench process is writing {self.dir}; wait for it or kill it") from None
        for name in APPEND_ONLY:
            _repair_torn_tail(self.dir / name)
        self.attempt = 0  # the invocation number, set by log_invocation


    def write_manifest_once(self, manifest: dict[str, Any]) -> None:
        path = self.dir / MANIFEST
        if path.exists():
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)

    def log_invocation(self, info: dict[str, Any]) -> None:
        """Every (re)start appends its environment, so version drift across resumes is visible."""
        self.attempt = len(read_jsonl(self.dir / INVOCATIONS)) + 1
        self._append(INVOCATIONS, {**info, "attempt": self.attempt})

    def finished(self, retry_errors: bool = False) -> set[str]:
        latest = latest_by_key(read_episodes(self.dir))
        return {k for k, r in latest.items() if not (retry_errors and r.get("status") == "error")}

    def append_episode(self, record: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """One finished episode: its step rows first, then its record, both tagged with this attempt."""
        if not self.attempt:
            raise RuntimeError("log_invocation must run before episodes are appended")
        tag = {"key": record["key"], "attempt": self.attempt}
        with open(self.dir / STEPS, "a") as f:
            for row in steps:
                f.write(json.dumps({**tag, **row}, sort_keys=True, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._append(EPISODES, {**record, "attempt": self.attempt})

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(record, sort_keys=True, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        self._lock.close()


def _repair_torn_tail(path: Path) -> None:
    """Cut a partial last line (a write killed mid-way), so the next append starts on a line of its own."""
    if not path.exists() or not path.stat().st_size:
        return
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = path.read_bytes()
        f.truncate(data.rfind(b"\n") + 1)
