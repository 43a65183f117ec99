"""Protocol constants of the OpenVLA LIBERO reference and name resolution."""

import pytest

from bench.core.errors import BenchError
from bench.harness.registry import METHODS, SUITES
from envs.libero import MAX_STEPS, WAIT_ACTION, reference_protocol


def test_openvla_libero_protocol_constants():
    assert MAX_STEPS == {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                         "libero_90": 400}
    p = reference_protocol("libero_goal")
    assert (p.max_steps, p.wait_steps, p.env_seed, p.image_size) == (300, 10, 0, 256)
    assert WAIT_ACTION == (0, 0, 0, 0, 0, 0, -1)


def test_libero_long_is_libero_10():
    assert SUITES.resolve("libero_long").name == "libero_10"


def test_unknown_name_suggests_close_match():
    with pytest.raises(BenchError, match="Did you mean 'libero_object'"):
        SUITES.resolve("libero_objet")
    with pytest.raises(BenchError, match="unknown method 'nope'"):
        METHODS.resolve("nope")


def test_gripper_post_processing_matches_reference():
    from bench.core.models.processor import gripper_to_env

    # model 1 = open → env −1 = open; bin centers never equal 0.5
    assert gripper_to_env(0.996) == -1.0 and gripper_to_env(0.004) == 1.0
