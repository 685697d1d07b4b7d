"""benchmarks.plateau: the table read from a run's losses.csv, the plateau rule, and bad folders."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmarks.plateau import main, plateau_epoch, read_run

FIELDS = ["epoch", "train_loss", "val_loss", "val_AP@3px", "seconds", "validated"]


def write_run(folder: Path, aps: dict[int, float], epochs: int) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "losses.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for e in range(1, epochs + 1):
            val = e in aps
            w.writerow({"epoch": e, "train_loss": 0.1, "val_loss": 0.1 if val else "", "val_AP@3px": aps.get(e, ""),
                        "seconds": 15.0 if val else 10.0, "validated": int(val)})
    return folder


def test_plateau_is_the_last_epoch_that_rose_by_more_than_the_margin() -> None:
    epoch = np.array([5, 10, 15, 20, 25])
    assert plateau_epoch(epoch, np.array([0.5, 0.7, 0.705, 0.69, 0.708]), rise=0.01) == 10
    assert plateau_epoch(epoch, np.array([0.5, 0.7, 0.705, 0.69, 0.72]), rise=0.01) == 25


def test_reads_only_validated_epochs_and_times_them_apart(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "r", {5: 0.4, 10: 0.6}, epochs=10))
    assert run["epoch"].tolist() == [5, 10] and run["ap"].tolist() == [0.4, 0.6]
    assert run["train_s"] == 10.0 and run["val_s"] == 15.0
    assert abs(run["minutes"] - (8 * 10 + 2 * 15) / 60) < 1e-9


def test_table_and_plot_and_a_bad_folder_is_named(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    good = write_run(tmp_path / "good", {20: 0.8, 40: 0.9}, epochs=40)
    out = tmp_path / "curve.png"
    assert main([str(good), str(tmp_path / "missing"), "--markdown", "--plot", str(out)]) == 1
    printed = capsys.readouterr()
    assert "| good | 0.800 | 0.900 |" in printed.out
    assert "missing: no losses.csv" in printed.err
    assert out.read_bytes()[:4] == b"\x89PNG"
