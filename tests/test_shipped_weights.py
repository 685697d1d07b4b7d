"""The shipped weights still score what the README states on SIRST test (evaluation only).

python -m benchmarks.accuracy wrote benchmarks/accuracy.json and the README table from one run; this
re-scores the shipped models the same way and fails if a figure moved, so a change that costs
accuracy (in the model, the decoder, the reader or the metric) cannot land unnoticed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.accuracy import shipped_rows
from simple_keypoint.dataset import load_dataset
from simple_keypoint.evaluate import match
from simple_keypoint.predict import load_model

ROOT = Path(__file__).resolve().parents[1]

CHECKED = ["AP@3px", "Pd@3px", "FA/img@3px", "err_mean@3px", "Pd@1px", "silent"]
TOLERANCE = 0.005  # float sums differ a little between machines and thread counts


@pytest.fixture(scope="module")
def test_samples():  # noqa: ANN201
    samples, _ = load_dataset(ROOT / "data/test", progress=False)
    return samples


@pytest.fixture(scope="module")
def stated() -> dict[str, dict[str, float]]:
    return json.loads((ROOT / "benchmarks/accuracy.json").read_text())


def test_shipped_models_score_what_is_stated(test_samples, stated) -> None:  # noqa: ANN001
    measured = shipped_rows(test_samples, ROOT / "weights/heatmap.pt", ROOT / "weights/regression.pt")
    assert any(name.startswith("heatmap (shipped") for name in measured)
    assert any(name.startswith("regression (shipped") for name in measured)
    for name, row in measured.items():
        assert name in stated, f"{name!r} is not in benchmarks/accuracy.json: rerun benchmarks/accuracy.py"
        for key in CHECKED:
            if key in row:
                assert row[key] == pytest.approx(stated[name][key], abs=TOLERANCE, nan_ok=True), (name, key)


def test_readme_states_the_benchmarked_figures(stated) -> None:  # noqa: ANN001
    """Every shipped-model row of the README's table shows the figures of accuracy.json."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, row in stated.items():
        if "shipped" not in name:
            continue
        line = next((ln for ln in readme.splitlines() if ln.startswith(f"| {name} |")), None)
        assert line is not None, f"README table has no row {name!r}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        for key in ("AP@3px", "Pd@3px", "err_mean@3px"):
            assert f"{row[key]:.3f}" in cells, (name, key)
    assert re.search(r"python benchmarks/accuracy\.py", readme)


def test_shipped_heatmap_best_point_is_on_a_target_in_most_images(test_samples) -> None:  # noqa: ANN001
    """The spine's bar: the best point lies within 3 px of a labelled target on >= half the images."""
    model = load_model(ROOT / "weights/heatmap.pt", device="cpu")
    with_targets = [s for s in test_samples if len(s.points)]
    hits = 0
    for s in with_targets:
        pred = model.predict_standardised(s.image, conf=0.0, max_points=1)
        hits += bool(len(pred)) and bool((match(pred, s.points, 3.0)[0] >= 0).any())
    assert hits / len(with_targets) >= 0.5, f"{hits}/{len(with_targets)}"
