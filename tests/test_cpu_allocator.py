"""pixelzoo.cpu_allocator: freed tensor memory is reused without page faults (in a fresh process)."""
import platform
import subprocess
import sys

import pytest

_PROBE = r"""
import resource, torch
from pixelzoo.cpu_allocator import reuse_freed_memory
assert reuse_freed_memory()
def step():
    # a training step's pattern: several large buffers alive at once, all freed at the end
    bufs = [torch.empty(3 * 2**20 + 1000 * i).fill_(1.0) for i in range(4)]  # 12 MiB each
    return sum(float(b[-1]) for b in bufs)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults() -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_reuse_freed_memory_stops_page_faults_on_reallocation():
    pages = 10 * 4 * 12 * 2**20 // 4096  # what ten steps would fault in if every buffer were fresh memory
    # glibc's default mmaps and unmaps these blocks on most runs (about `pages` faults; its adaptive
    # threshold sometimes keeps some), so the bound below fails without the settings.
    on = _faults()
    assert on < pages // 10, on


def test_reuse_freed_memory_is_a_no_op_off_glibc(monkeypatch):
    from pixelzoo import cpu_allocator
    monkeypatch.setattr(cpu_allocator.platform, "libc_ver", lambda: ("musl", ""))
    assert cpu_allocator.reuse_freed_memory() is False
