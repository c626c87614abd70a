"""A resumed run keeps the thread count it was started with (CPU kernels split their sums by thread count)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

ARGS = ["pixelcnnpp_mnist", "--set", "nr_filters=16", "--batch-size", "16", "--no-progress", "--eval-every", "-1",
        "--sample-every", "-1", "--seed", "3"]


def _train(*argv, threads_env="2"):
    # The tests' own process runs on one thread (conftest); a fresh process takes OMP_NUM_THREADS, as a user's
    # shell would, so a resume that ignored the saved count would run on 2 threads here.
    env = dict(os.environ, OMP_NUM_THREADS=threads_env)
    return subprocess.run([sys.executable, "-m", "pixelzoo", "train", *argv], env=env, capture_output=True, text=True,
                          check=True)


def _weights(run):
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


@pytest.mark.slow
def test_resume_without_threads_reuses_the_runs_count_and_ends_bit_identical(tmp_path):
    _train(*ARGS, "--steps", "6", "--threads", "1", "--out", str(tmp_path / "straight"))
    for name in ("resumed", "forced"):
        _train(*ARGS, "--steps", "3", "--threads", "1", "--out", str(tmp_path / name))
    _train("--out", str(tmp_path / "resumed"), "--resume", "--steps", "6", "--no-progress")
    forced = _train("--out", str(tmp_path / "forced"), "--resume", "--steps", "6", "--no-progress", "--threads", "2")
    assert "no longer bit-identical" in forced.stderr
    straight, resumed, other = (_weights(tmp_path / n) for n in ("straight", "resumed", "forced"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # The test can fail: another thread count really does change the weights.
    assert any(not torch.equal(straight[k], other[k]) for k in straight)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["threads"] == 1
