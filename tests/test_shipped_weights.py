"""The shipped weights still score what benchmarks/accuracy.json and the docs state, on SIRST test
and NUDT-SIRST test (evaluation only, no training).

``python -m benchmarks.accuracy --markdown --json benchmarks/accuracy.json`` wrote the JSON and the
tables the docs show from one run; this re-scores the shipped models exactly as its ``--quick``
rows do and fails if a figure moved, so a change that costs accuracy (in the model, the decoder,
the reader or the metric) cannot land unnoticed, and if the docs no longer state the figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.accuracy import (
    DEFAULT_JSON,
    EXTENDED_SET,
    SHIPPED_HEATMAPS,
    SHIPPED_REGRESSION,
    TEST_SETS,
    file_digest,
    load_sets,
    shipped_figures,
)
from simple_keypoint.evaluate import match
from simple_keypoint.predict import load_model

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["images", "targets", "AP@3px", "Pd@3px", "FA/img@3px", "FA/MPx@3px", "err_mean@3px", "Pd@1px"]
STATED_IN_DOCS = ["AP@3px", "Pd@3px", "FA/img@3px", "err_mean@3px"]
TOLERANCE = 1e-3  # float sums differ a little between machines, thread counts and backends
RERUN = "rerun python -m benchmarks.accuracy --markdown --json benchmarks/accuracy.json"


@pytest.fixture(scope="module")
def stated() -> dict:
    path = ROOT / DEFAULT_JSON
    assert path.is_file(), f"{path} is missing: {RERUN}"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def test_sets() -> dict:
    return load_sets(TEST_SETS)


@pytest.fixture(scope="module")
def shipped() -> list[str]:
    return [p for p in SHIPPED_HEATMAPS if (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def measured(stated, test_sets, shipped) -> dict:  # noqa: ANN001
    return shipped_figures(shipped, SHIPPED_REGRESSION, test_sets, stated.get("tophat"))


def test_json_was_made_with_the_shipped_weights(stated, shipped) -> None:  # noqa: ANN001
    assert "weights/heatmap.pt" in shipped, "weights/heatmap.pt (the default model) is not shipped"
    for path in [*shipped, SHIPPED_REGRESSION]:
        assert path in stated.get("weights", {}), f"{DEFAULT_JSON} has no figures for {path}: {RERUN}"
        assert stated["weights"][path] == file_digest(ROOT / path), f"{path} changed since {DEFAULT_JSON} was made: {RERUN}"
    assert "settings" in stated.get("tophat", {}), f"{DEFAULT_JSON} holds no tuned top-hat: {RERUN}"


def test_every_test_split_is_scored_whole(measured) -> None:  # noqa: ANN001
    sizes = {name: next(r for n, r in rows.items() if n.startswith("heatmap"))["images"]
             for name, rows in measured["per_dataset"].items()}
    assert sizes == {"SIRST test": 86, "NUDT-SIRST test": 664, "drone-ir test": 274}
    assert any(n.startswith("regression") for n in measured["per_dataset"]["SIRST test"])
    assert any(n.startswith("top-hat") for n in measured["per_dataset"]["SIRST test"])


def test_shipped_models_score_what_is_stated(stated, measured) -> None:  # noqa: ANN001
    for data, rows in measured["per_dataset"].items():
        for name, row in rows.items():
            assert name in stated["per_dataset"].get(data, {}), f"{name!r} on {data} is not in {DEFAULT_JSON}: {RERUN}"
            for key in CHECKED:
                assert row[key] == pytest.approx(stated["per_dataset"][data][name][key], abs=TOLERANCE, nan_ok=True), \
                    (data, name, key)


def test_one_object_one_point_counts_are_what_is_stated(stated, measured) -> None:  # noqa: ANN001
    assert measured["one_point"], f"no one-point counts on {EXTENDED_SET}"
    for name, counts in measured["one_point"].items():
        assert counts["components"] == 273  # NUDT-SIRST test's mask components of >= 40 px
        assert counts == pytest.approx(stated["one_point"][name], nan_ok=True), name


def docs_file() -> Path:
    """docs/results.md where it exists (the results moved out of the README), else README.md."""
    results = ROOT / "docs/results.md"
    return results if results.is_file() else ROOT / "README.md"


def table_cells(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_docs_state_the_benchmarked_figures(stated, measured) -> None:  # noqa: ANN001
    """Each re-scored row is a line of a Markdown table in the docs: model, data set and figures."""
    path = docs_file()
    assert path.is_file(), "neither docs/results.md nor README.md exists"
    text = path.read_text(encoding="utf-8")
    assert "python -m benchmarks.accuracy" in text, f"{path.name} does not name the command that makes its tables"
    lines = table_cells(text)
    for data, rows in measured["per_dataset"].items():
        for name in rows:
            row = stated["per_dataset"][data][name]
            line = next((cells for cells in lines if name in cells and data in cells), None)
            assert line is not None, (f"{path.name} has no table row for {name!r} on {data}: paste the --markdown "
                                      f"output of python -m benchmarks.accuracy")
            for key in STATED_IN_DOCS:
                figure = "nan" if math.isnan(row[key]) else f"{row[key]:.3f}"
                assert figure in line, f"{path.name}: {name!r} on {data} does not state {key} {figure} (line: {line})"


def test_shipped_heatmap_best_point_is_on_a_target_in_most_images(test_sets) -> None:  # noqa: ANN001
    """The spine's bar: the best point lies within 3 px of a labelled target on >= half the images."""
    model = load_model(ROOT / "weights/heatmap.pt", device="cpu")
    with_targets = [s for s in test_sets["SIRST test"] if len(s.points)]
    hits = 0
    for s in with_targets:
        pred = model.predict_standardised(s.image, conf=0.0, max_points=1)
        hits += bool(len(pred)) and bool((match(pred, s.points, 3.0)[0] >= 0).any())
    assert hits / len(with_targets) >= 0.5, f"{hits}/{len(with_targets)}"
