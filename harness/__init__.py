"""rlvr-harness: one budget, one evaluation protocol, head-to-head leaderboards for GRPO-family RL."""

import os
import platform

__version__ = "0.1.0"

# Same seed, same numbers on every x86 machine: torch picks its CPU kernels by the processor's widest vector
# unit (AVX-512 where there is one, else AVX2), and MKL likewise, and the two round differently, so an RL run
# on an AVX-512 machine ends with other weights than on an AVX2 one (measured on the sandbox: 3 GRPO steps,
# different weights; a committed leaderboard could not be reproduced on a machine of the same kind but another
# processor generation). Every x86-64 processor of the last decade has AVX2, and on the sandbox's tiny
# matrices it is as fast (5.4 s against 5.4 s for those steps), so AVX2 kernels are the default: set before
# torch is imported, which is why it lives here, and recorded on every card (`machine.cpu_capability`).
# Set ATEN_CPU_CAPABILITY / MKL_CBWR yourself to choose otherwise.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_CBWR", "AVX2")
