"""Timed regions accumulate; CUDA events path on a GPU."""

import time

import pytest
import torch

from bench.core.timing import RegionTimer


def test_cpu_regions_accumulate_wall_time():
    t = RegionTimer("cpu")
    for _ in range(2):
        with t.region("a"):
            time.sleep(0.01)
    r = t.report()
    assert 0.02 <= r["time_a_s"] < 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_time_gpu_work():
    t = RegionTimer("cuda")
    x = torch.randn(2048, 2048, device="cuda")
    with t.region("matmul"):
        for _ in range(10):
            x = x @ x / 2048
    assert t.report()["time_matmul_s"] > 0
