"""Build a cache directory once, atomically: converted models, ONNX exports, trained tokenizers.

``build(tmp)`` fills a temporary sibling that is then renamed into place, so a reader never sees a
half-written directory, concurrent builders do not clash (the first rename wins), and a stale
directory (``is_current`` false, e.g. an older export format) is replaced as a whole.
"""

from __future__ import annotations

import json
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


def build_stamped(
    target: Path,
    build: Callable[[Path], dict],
    *,
    stamp: dict,
    required: str,
    manifest: str = "export.json",
    what: str = "",
) -> Path:
    """``build_once`` for artifacts that carry a manifest: reused only while every key of ``stamp``
    (e.g. ``{"format": 2}``) matches the manifest and ``required`` exists in the directory.

    ``build(tmp)`` writes the files and returns facts to record; the manifest gets ``stamp``, those facts
    and the build time, and every file is made world-readable (exporters such as onnx write 0600).
    """

    def current(path: Path) -> bool:
        try:
            recorded = json.loads((path / manifest).read_text())
        except (OSError, ValueError):
            return False
        return (path / required).exists() and all(recorded.get(k) == v for k, v in stamp.items())

    def stamped(tmp: Path) -> None:
        started = time.perf_counter()
        facts = build(tmp)
        record = {**stamp, **facts, "seconds": round(time.perf_counter() - started, 1)}
        (tmp / manifest).write_text(json.dumps(record, indent=2))
        for path in tmp.iterdir():
            path.chmod(0o644)

    return build_once(target, stamped, is_current=current, what=what)
