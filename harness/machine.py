"""The CPU kernels every run uses, chosen where a command starts.

Same seed, same numbers on every x86 machine: torch picks its CPU kernels by the processor's widest vector unit
(AVX-512 where there is one, else AVX2), and MKL likewise, and the two round differently, so an RL run on an
AVX-512 machine ends with other weights than on an AVX2 one (measured on the sandbox: 3 GRPO steps, different
weights; a committed leaderboard could not be reproduced on a machine of the same kind but another processor
generation). Every x86-64 processor of the last decade has AVX2, and on the sandbox's tiny matrices it is as fast
(5.4 s against 5.4 s for those steps), so AVX2 kernels are the default.

torch and MKL read the choice when they load, so it is made before torch is imported: first thing in `harness`'s
command (`harness.cli.main`), the test suite's conftest and each perf script. Code that imports the harness as a
library calls `pin_cpu_kernels()` itself before importing torch to get the command's numbers. Importing `harness`
changes nothing. Set ATEN_CPU_CAPABILITY / MKL_CBWR yourself to choose otherwise; the capability in use is
recorded with every compare (`machine.cpu_capability` in protocol.json).
"""

from __future__ import annotations

import os
import platform
import sys
import warnings

KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def pin_cpu_kernels() -> None:
    """Choose AVX2 kernels on x86-64 unless the environment already names others; a no-op elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    if "torch" in sys.modules and any(name not in os.environ for name in KERNELS):
        warnings.warn("pin_cpu_kernels() called after torch was imported: the kernels torch chose stay "
                      "(call it before importing torch)", RuntimeWarning, stacklevel=2)
    for name, value in KERNELS.items():
        os.environ.setdefault(name, value)
