"""build_once: a directory appears whole or not at all, once, and stale ones are replaced."""

from __future__ import annotations

import pytest
from genai_core.cachedir import build_once


def test_builds_once_then_reuses(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "data").write_text("x")

    target = tmp_path / "cache" / "thing"
    assert build_once(target, build) == target
    assert build_once(target, build) == target
    assert len(calls) == 1 and (target / "data").read_text() == "x"
    assert [p.name for p in target.parent.iterdir()] == ["thing"]  # no temporary folders left


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(tmp):
        (tmp / "half").write_text("written")
        raise RuntimeError("boom")

    target = tmp_path / "thing"
    with pytest.raises(RuntimeError):
        build_once(target, build)
    assert list(tmp_path.iterdir()) == []


def test_a_stale_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "thing"
    target.mkdir()
    (target / "old").write_text("v1")

    def build(tmp):
        (tmp / "format").write_text("2")

    build_once(target, build, is_current=lambda p: (p / "format").exists())
    assert sorted(p.name for p in target.iterdir()) == ["format"]
