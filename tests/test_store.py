"""Run store: append-only records, torn-line repair, one writer, resume keys."""

import json

import pytest

from bench.errors import BenchError
from bench.spec import RunSpec
from bench.store import RunStore, read_episodes


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
    store.append({"key": "0:0", "status": "ok", "success": True})
    store.append({"key": "0:1", "status": "error", "success": False})
    store.close()
    with open(tmp_path / "episodes.jsonl", "a") as f:
        f.write('{"key": "1:0", "sta')  # a process killed mid-write
    store = RunStore(tmp_path)
    assert store.finished() == {"0:0", "0:1"}
    assert store.finished(retry_errors=True) == {"0:0"}
    store.append({"key": "1:0", "status": "ok", "success": False})
    store.close()
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["0:0", "0:1", "1:0"]
    assert len(read_episodes(tmp_path)) == 3


def test_second_writer_is_refused(tmp_path):
    first = RunStore(tmp_path)
    with pytest.raises(BenchError, match="another bench process"):
        RunStore(tmp_path)
    first.close()
