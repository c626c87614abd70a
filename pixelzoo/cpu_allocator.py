"""Keep freed CPU tensor memory in the process for reuse, instead of returning it to the OS at every free.

PyTorch's CPU allocator is plain ``malloc``. glibc serves large blocks with a fresh ``mmap`` and gives them
back with ``munmap`` (and trims the heap top past a threshold), so every activation buffer of a training
step is new memory to the kernel: its first write page-faults once per 4 KiB. A step of the issue-10 small
config (3x32x32, batch 32) took about 57,000 page faults and 0.12 s of system time on 2 threads; with the
settings below, none after the first step (bench/README.md). This is what the CUDA caching allocator does
for GPU memory; on the CPU it is a process-wide malloc setting, so it is opt-in: ``pixelzoo train`` and the
benches turn it on, library calls never do.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["reuse_freed_memory"]

# mallopt(3) parameter numbers, from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
_TRIM_THRESHOLD = 2**31 - 1  # the largest int: never trim the heap top
_TOP_PAD = 64 * 2**20  # grow the heap in 64 MiB steps


def reuse_freed_memory() -> bool:
    """Make glibc's malloc serve blocks up to 32 MiB from a heap that it never trims, so that memory a
    step frees is reused by the next one without page faults. Process-wide; the peak memory of the process
    then stays resident until it exits. Call it once before training on the CPU.

    Returns:
        True if the settings were applied; False where the C library is not glibc (nothing changed).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = [(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)]
    return all(mallopt(param, value) == 1 for param, value in settings)
