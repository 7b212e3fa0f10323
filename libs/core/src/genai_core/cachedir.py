"""Build a cache directory once, atomically: converted models, ONNX exports, trained tokenizers.

``build(tmp)`` fills a temporary sibling that is then renamed into place, so a reader never sees a
half-written directory, concurrent builders do not clash (the first rename wins), and a stale
directory (``is_current`` false, e.g. an older export format) is replaced as a whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def build_once(
    target: Path,
    build: Callable[[Path], None],
    *,
    is_current: Callable[[Path], bool] | None = None,
    what: str = "",
) -> Path:
    """Return ``target``, building it first when it is missing or not current."""
    current = is_current or (lambda path: path.is_dir())
    if current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    tmp.mkdir()
    started = time.perf_counter()
    try:
        build(tmp)
        if target.exists():  # stale: move it out of the way, whole
            stale = target.with_name(f".{target.name}.stale.{uuid.uuid4().hex}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # a concurrent builder finished first; theirs is as good as ours
            if not current(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %s in %.1f s: %s", what or target.name, time.perf_counter() - started, target)
    return target
