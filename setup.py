"""Packages for pip: everything under simple_keypoint/ and landmark_annotation/, found at build time
(so new sub-packages need no edit here), plus the repo's weights/ installed as simple_keypoint/weights.
Metadata lives in pyproject.toml; this file exists because that mapping cannot be combined with
automatic package discovery there."""

from pathlib import Path

from setuptools import find_packages, setup

packages = find_packages(include=["simple_keypoint", "simple_keypoint.*", "landmark_annotation", "landmark_annotation.*"])
package_dir = {}
if not (Path(__file__).parent / "simple_keypoint" / "weights").is_dir():  # weights not moved into the package yet
    packages.append("simple_keypoint.weights")
    package_dir["simple_keypoint.weights"] = "weights"

setup(packages=packages, package_dir=package_dir, package_data={"simple_keypoint.weights": ["*.pt"]},
      include_package_data=False)
