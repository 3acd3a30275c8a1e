"""Where derived artefacts (warm starts, converted models, rewrites) are cached: $HARNESS_CACHE or ~/.cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    root = Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "rlvr-harness")
    if root.exists() and not root.is_dir():
        raise ValueError(f"the cache {root} (HARNESS_CACHE) is a file; point HARNESS_CACHE at a folder")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def atomic_directory(final: Path):
    """Yield a scratch folder that becomes `final` only if the block finishes: a killed build leaves no half cache."""
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield scratch
        if final.exists():  # another process finished first; theirs is as good as ours
            shutil.rmtree(scratch)
        else:
            os.replace(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
