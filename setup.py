"""Packages for pip: everything under simple_keypoint/ and landmark_annotation/, found at build time
(so new sub-packages need no edit here), plus the shipped weights as simple_keypoint/weights: taken
from the repo's weights/ until the files are moved into the package. Metadata lives in pyproject.toml;
this file exists because that mapping cannot be combined with automatic package discovery there."""

from pathlib import Path

from setuptools import find_packages, setup

packages = find_packages(include=["simple_keypoint", "simple_keypoint.*", "landmark_annotation", "landmark_annotation.*"])
package_dir = {}
if "simple_keypoint.weights" not in packages:  # a data-only folder has no __init__.py for find_packages
    packages.append("simple_keypoint.weights")
if not (Path(__file__).parent / "simple_keypoint" / "weights").is_dir():
    package_dir["simple_keypoint.weights"] = "weights"

setup(packages=packages, package_dir=package_dir, package_data={"simple_keypoint.weights": ["*.pt"]},
      include_package_data=False)
