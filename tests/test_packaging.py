"""The package metadata agrees with the requirement files, and an installed package (pip install .,
as .ci/run does) works from another folder: the command, the shipped weights, the Python API."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import installed_command, run_outside

import simple_keypoint

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_lines(name: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in (REPO / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-r")]


def test_requirements_files_match_pyproject() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert sorted(requirement_lines("requirements.txt")) == sorted(project["dependencies"] + extras["visdom"])
    assert sorted(requirement_lines("requirements-dev.txt")) == sorted(extras["dev"])
    assert "-r requirements.txt" in (REPO / "requirements-dev.txt").read_text().splitlines()
    assert "torch==2.13.0" in project["dependencies"] and extras["visdom"] == ["visdom==0.2.4"]
    assert requirement_lines("constraints.txt") == ["setuptools<81"]
    assert "setuptools>=69,<81" in PYPROJECT["build-system"]["requires"]


def test_metadata() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == "simple-keypoint"
    assert project["scripts"] == {"simple-keypoint": "simple_keypoint.cli:main"}
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "simple_keypoint.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", simple_keypoint.__version__)


def test_installed_package_works_from_another_folder(tmp_path: Path) -> None:
    command = installed_command()
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("Misc_15.png", "Misc_111.png"):
        shutil.copy(REPO / "data" / "test" / "images" / name, frames)
    result = run_outside(tmp_path, command, "--version")
    assert result.stdout == f"simple-keypoint {simple_keypoint.__version__}\n", result.stderr
    for folder in ("detect", "detect2"):  # the second run goes to a new folder
        result = run_outside(tmp_path, command, "detect", "--source", "frames", "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 image(s) done" in result.stdout and f"results in output/{folder}\n" in result.stdout
        assert sorted(p.name for p in (tmp_path / "output" / folder / "labels").iterdir()) == ["Misc_111.txt", "Misc_15.txt"]
    api = ("import simple_keypoint, sys; from simple_keypoint import load_model; "
           "from simple_keypoint.paths import shipped_weights; "
           "w = shipped_weights('heatmap'); print(simple_keypoint.__file__); print(w); "
           "print(len(load_model(w).predict('frames/Misc_15.png')))")
    result = run_outside(tmp_path, sys.executable, "-c", api)
    assert result.returncode == 0, result.stderr
    package, weights, count = result.stdout.splitlines()
    assert Path(package).parent != REPO / "simple_keypoint", "imported the checkout, not the installed package"
    assert Path(package).parent.parent.name == "site-packages"
    assert Path(weights) == Path(package).parent / "weights" / "heatmap.pt"
    assert int(count) >= 1
    result = run_outside(tmp_path, command, "detect", "--quiet")  # no data is installed: says what it looked for
    assert result.returncode == 2
    assert result.stderr == f"error: default source folder data/test/images not found: looked in {tmp_path} " \
                            "(an installed package ships no data)\n"
