"""Run store: append-only records, torn-line repair, one writer, resume keys."""

import json

import pytest

from bench.core.errors import BenchError
from bench.harness.spec import RunSpec
from bench.harness.store import RunStore, read_episodes


def spec(**kw) -> RunSpec:
    base = dict(suite="libero_object", tasks=(0, 1), episodes_per_task=2, max_steps=5, policy="p",
                policy_fingerprint="f", method="baseline")
    return RunSpec(**{**base, **kw})


def test_hash_depends_on_every_field():
    assert spec().run_hash == spec().run_hash
    assert spec().run_hash != spec(max_steps=6).run_hash
    assert spec().run_hash != spec(method_params={"r": 0.5}).run_hash
    assert spec().episode_keys() == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_append_resume_and_torn_tail(tmp_path):
    store = RunStore(tmp_path)
    store.log_invocation({})
    store.append_episode({"key": "0:0", "status": "ok", "success": True}, [])
    store.append_episode({"key": "0:1", "status": "error", "success": False}, [])
    store.close()
    with open(tmp_path / "episodes.jsonl", "a") as f:
        f.write('{"key": "1:0", "sta')  # a process killed mid-write
    store = RunStore(tmp_path)
    store.log_invocation({})
    assert store.finished() == {"0:0", "0:1"}
    assert store.finished(retry_errors=True) == {"0:0"}
    store.append_episode({"key": "1:0", "status": "ok", "success": False}, [])
    store.close()
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["0:0", "0:1", "1:0"]
    assert len(read_episodes(tmp_path)) == 3


def test_second_writer_is_refused(tmp_path):
    first = RunStore(tmp_path)
    with pytest.raises(BenchError, match="another bench process"):
        RunStore(tmp_path)
    first.close()


def test_torn_step_rows_are_repaired_and_attempts_kept_apart(tmp_path):
    """A torn steps.jsonl tail and a retried episode: steps.parquet holds exactly the latest attempt's rows."""
    import pandas as pd

    from bench.harness.store import materialize_steps

    def rows(tag, n):
        return [{"step": i, "tag": tag} for i in range(n)]

    store = RunStore(tmp_path)
    store.log_invocation({})
    store.append_episode({"key": "0:0", "status": "error", "success": False, "steps": 3}, rows("first", 3))
    store.close()
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('{"key": "0:0", "attempt": 2, "step": 0, "ta')  # killed mid-row of the retry
    store = RunStore(tmp_path)  # the retry after the kill, then a second retry with fewer steps
    store.log_invocation({})
    store.append_episode({"key": "0:0", "status": "ok", "success": True, "steps": 2}, rows("retry", 2))
    store.close()
    lines = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert all(line.endswith("}") for line in lines) and len(lines) == 5
    df = pd.read_parquet(materialize_steps(tmp_path))
    assert list(df.tag) == ["retry", "retry"] and list(df.step) == [0, 1] and set(df.attempt) == {2}
    assert [r["attempt"] for r in read_episodes(tmp_path)] == [1, 2]


def test_rows_of_an_attempt_killed_before_its_record_are_not_kept(tmp_path):
    import pandas as pd

    from bench.harness.store import materialize_steps

    store = RunStore(tmp_path)
    store.log_invocation({})
    with open(tmp_path / "steps.jsonl", "a") as f:  # attempt 1 wrote its rows, then died before its record
        f.write(json.dumps({"key": "0:0", "attempt": 1, "step": 0, "tag": "dead"}) + "\n")
    store.close()
    store = RunStore(tmp_path)
    store.log_invocation({})
    store.append_episode({"key": "0:0", "status": "ok", "success": True, "steps": 1}, [{"step": 0, "tag": "live"}])
    store.close()
    assert list(pd.read_parquet(materialize_steps(tmp_path)).tag) == ["live"]
