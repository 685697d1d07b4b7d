"""Packages for pip: everything under simple_keypoint/ and landmark_annotation/, found at build time
(so new sub-packages need no edit here), plus the shipped weights as simple_keypoint/weights: taken
from the repo's weights/ until the files are moved into the package, and the sample frame in
simple_keypoint/samples. Metadata lives in pyproject.toml; this file exists because that mapping
cannot be combined with automatic package discovery there."""

from pathlib import Path

from setuptools import find_packages, setup

packages = find_packages(include=["simple_keypoint", "simple_keypoint.*", "landmark_annotation", "landmark_annotation.*"])
package_dir = {}
for data_only in ("simple_keypoint.weights", "simple_keypoint.samples"):  # no __init__.py for find_packages
    if data_only not in packages:
        packages.append(data_only)
if not (Path(__file__).parent / "simple_keypoint" / "weights").is_dir():
    package_dir["simple_keypoint.weights"] = "weights"

setup(packages=packages, package_dir=package_dir,
      package_data={"simple_keypoint.weights": ["*.pt"], "simple_keypoint.samples": ["*.png"]}, include_package_data=False)
