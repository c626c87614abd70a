import os

import pytest
import torch

# Tiny models are as fast or faster on one thread, and two spinning OpenMP threads per process make a
# shared 2-core machine crawl (ENVIRONMENT.md §4).
torch.set_num_threads(int(os.environ.get("PIXELZOO_TEST_THREADS", "1")))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
