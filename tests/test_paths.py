"""simple_keypoint.paths: shipped weights from the package or the checkout, defaults from any folder,
numbered run folders and the latest run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from simple_keypoint import paths
from simple_keypoint.paths import DefaultPathError, default_path, increment_path, latest_run, numbered_runs, shipped_weights

REPO = Path(__file__).resolve().parents[1]


def test_shipped_weights_prefer_the_package_then_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.repo_root() == REPO
    package = tmp_path / "simple_keypoint"
    monkeypatch.setattr(paths, "PACKAGE_DIR", package)
    monkeypatch.setattr(paths, "repo_root", lambda: REPO)
    assert shipped_weights("heatmap") == REPO / "weights" / "heatmap.pt"  # not moved into the package yet
    (package / "weights").mkdir(parents=True)
    (package / "weights" / "heatmap.pt").write_bytes(b"x")
    assert shipped_weights("heatmap") == package / "weights" / "heatmap.pt"
    assert shipped_weights("regression") == REPO / "weights" / "regression.pt"


def test_shipped_weights_missing_names_every_place_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "site" / "simple_keypoint")
    monkeypatch.setattr(paths, "repo_root", lambda: None)  # an installed package: no checkout
    with pytest.raises(DefaultPathError) as caught:
        shipped_weights("heatmap")
    assert str(caught.value) == f"no shipped heatmap weights: looked for {tmp_path / 'site/simple_keypoint/weights/heatmap.pt'}"


def test_default_path_from_the_cwd_else_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_path("data/test/images") == REPO / "data" / "test" / "images"
    (tmp_path / "data" / "test" / "images").mkdir(parents=True)
    assert default_path("data/test/images") == Path("data/test/images")  # the user's own folder wins
    with pytest.raises(DefaultPathError) as caught:
        default_path("data/nowhere", "source folder")
    assert str(caught.value) == f"default source folder data/nowhere not found: looked in {tmp_path} nor in the checkout {REPO}"
    monkeypatch.setattr(paths, "repo_root", lambda: None)
    with pytest.raises(DefaultPathError, match=r"an installed package ships no data"):
        default_path("data/train")


def test_increment_path_numbers_like_ultralytics(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "heatmap"
    assert increment_path(base) == base
    base.mkdir(parents=True)
    assert increment_path(base) == tmp_path / "runs" / "heatmap2"
    assert increment_path(base, exist_ok=True) == base
    (tmp_path / "runs" / "heatmap2").mkdir()
    (tmp_path / "runs" / "heatmap3").write_text("a file is in the way too")
    assert increment_path(base) == tmp_path / "runs" / "heatmap4"
    (tmp_path / "out.txt").write_text("x")
    assert increment_path(tmp_path / "out.txt") == tmp_path / "out2.txt"
    assert not (tmp_path / "runs" / "heatmap4").exists()  # only named, not made


def test_numbered_runs_ignores_lookalikes(tmp_path: Path) -> None:
    for name in ("heatmap", "heatmap2", "heatmap10", "heatmap_old", "heatmap02", "heatmap1", "heatmaps", "regression2"):
        (tmp_path / name).mkdir()
    assert numbered_runs(tmp_path / "heatmap") == [tmp_path / n for n in ("heatmap", "heatmap2", "heatmap10")]
    assert numbered_runs(tmp_path / "missing" / "heatmap") == []


def touch(path: Path, when: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"checkpoint")
    os.utime(path, (when, when))


def test_latest_run_is_the_last_written(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "heatmap"
    with pytest.raises(DefaultPathError, match=r"no last\.pt in any run folder"):
        latest_run(base)
    now = time.time()
    touch(base / "weights" / "last.pt", now - 300)
    touch(tmp_path / "runs" / "heatmap2" / "weights" / "last.pt", now - 200)
    (tmp_path / "runs" / "heatmap3").mkdir()  # started, no checkpoint yet
    assert latest_run(base) == tmp_path / "runs" / "heatmap2" / "weights" / "last.pt"
    touch(base / "weights" / "last.pt", now - 100)  # the first run was resumed since
    assert latest_run(base) == base / "weights" / "last.pt"
    touch(tmp_path / "runs" / "heatmap3" / "best.pt", now)  # a file straight in the run folder counts too
    assert latest_run(base, file="best.pt") == tmp_path / "runs" / "heatmap3" / "best.pt"
    touch(tmp_path / "runs" / "heatmap2" / "weights" / "last.pt", now - 100)  # a tie: the higher number
    assert latest_run(base) == tmp_path / "runs" / "heatmap2" / "weights" / "last.pt"
