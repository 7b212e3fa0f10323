"""build_once: a directory appears whole or not at all, once, and stale ones are replaced."""

from __future__ import annotations

import json

import pytest
from genai_core.cachedir import build_once, build_stamped


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


def test_build_stamped_records_the_stamp_and_rebuilds_when_it_changes(tmp_path):


    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "model.bin").write_bytes(b"x")
        (tmp / "model.bin").chmod(0o600)
        return {"graph": "g"}

    target = tmp_path / "export"
    build_stamped(target, build, stamp={"format": 1}, required="model.bin")
    manifest = json.loads((target / "export.json").read_text())
    assert manifest["format"] == 1 and manifest["graph"] == "g" and manifest["seconds"] >= 0
    assert (target / "model.bin").stat().st_mode & 0o777 == 0o644
    build_stamped(target, build, stamp={"format": 1}, required="model.bin")
    assert len(calls) == 1  # current: reused
    build_stamped(target, build, stamp={"format": 2}, required="model.bin")
    assert len(calls) == 2 and json.loads((target / "export.json").read_text())["format"] == 2
    (target / "model.bin").unlink()
    build_stamped(target, build, stamp={"format": 2}, required="model.bin")
    assert len(calls) == 3 and (target / "model.bin").exists()  # incomplete: rebuilt
