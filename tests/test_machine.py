"""The CPU kernels are chosen where a command starts, not on import (harness/machine.py says why)."""

import os
import platform
import subprocess
import sys

import pytest
import torch

X86 = platform.machine().lower() in ("x86_64", "amd64")
CLEAN = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], env=CLEAN, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not X86, reason="AVX2 is an x86 choice")
def test_the_suite_runs_the_commands_kernels():
    """conftest pins the kernels before torch loads: the numbers tests pin are those `harness` commands give."""
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"


def test_importing_harness_changes_no_environment():
    assert _run("import os, harness, harness.compare, harness.cli; print(os.environ.get('ATEN_CPU_CAPABILITY'))") \
        == "None"


@pytest.mark.skipif(not X86, reason="AVX2 is an x86 choice")
def test_the_command_pins_avx2_unless_told_otherwise():
    code = ("import os; from harness.cli import main; main(['list', 'tasks']); "
            "print(os.environ['ATEN_CPU_CAPABILITY'], os.environ['MKL_CBWR'])")
    assert _run(code).splitlines()[-1] == "avx2 AVX2"
    told = subprocess.run([sys.executable, "-c", code], env={**CLEAN, "ATEN_CPU_CAPABILITY": "default"},
                          capture_output=True, text=True, check=True).stdout.strip()
    assert told.splitlines()[-1] == "default AVX2"
