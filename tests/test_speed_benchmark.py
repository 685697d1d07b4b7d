"""benchmarks/speed.py: the issue's targets are judged on the measured rows, the shipped file is
timed only when it holds its size, and the sizes-only run (the CI smoke test) prints every table."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import speed
from simple_keypoint.backbone import SIZES


def fake_row(name: str, size: str | None = None) -> speed.Row:
    return speed.Row(name, lambda frame: np.zeros((0, 3)), torch.nn.Identity(), torch.zeros(1), size=size)


def test_targets_are_judged_on_the_default_path_rows_against_the_seed_row() -> None:
    rows = [fake_row("heatmap n, default (onnxruntime)", "n"), fake_row("heatmap n, torch", "n"),
            fake_row("heatmap s, default (onnxruntime)", "s"), fake_row("heatmap s, torch", "s"),
            fake_row("seed heatmap net (360x480 3-ch, argmax)")]
    # n default 7.5x (pass) while its torch row is 3x; s default 1.5x (fail) while its torch row is 3x.
    lines = speed.target_lines(rows, [4.0, 10.0, 20.0, 10.0, 30.0])
    assert [line[0].split()[1] for line in lines] == ["n", "s"]
    assert [line[2] for line in lines] == ["7.5x", "1.5x"]
    assert [line[3] for line in lines] == ["pass", "FAIL"]


def test_a_shipped_file_of_another_size_is_replaced_by_an_untrained_net_of_the_size(tmp_path: Path) -> None:
    weights, scratch = tmp_path / "weights", tmp_path / "scratch"
    weights.mkdir()
    scratch.mkdir()
    for name, widths in (("heatmap.pt", SIZES["s"]), ("heatmap_n.pt", (8, 16, 32, 64))):
        _, checkpoint = speed.untrained("heatmap", {"widths": widths})
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        (weights / name).write_bytes(buffer.getvalue())
    s = speed.model_file("heatmap", "s", weights, scratch)
    assert (s.shipped, s.path, s.what) == (True, weights / "heatmap.pt", "heatmap.pt")
    n = speed.model_file("heatmap", "n", weights, scratch)
    assert not n.shipped and n.path.parent == scratch and "heatmap_n.pt holds widths 8-16-32-64" in n.what
    assert tuple(torch.load(n.path, weights_only=True)["model_args"]["widths"]) == SIZES["n"]


def test_sizes_only_smoke_run_prints_every_size_both_ways_and_the_targets(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        code = speed.main(["--sizes-only", "--frames", "2", "--warmup", "1", "--no-batch", "--no-memory",
                           "--no-end-to-end", "--weights-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    for size in SIZES:
        assert f"heatmap {size}, default (onnxruntime)" in out and f"heatmap {size}, torch" in out
        assert f"heatmap {size} (default path) >= " in out
    assert "seed heatmap net" in out and "regression" not in out.split("models:")[1]
    assert "untrained (no heatmap_n.pt)" in out


def test_end_to_end_reads_detect_benchmark_line_on_a_video_it_wrote(tmp_path: Path) -> None:
    frames = [np.full(speed.FRAME, 40 * i, np.uint8) for i in range(3)]
    video = speed.write_video(frames, tmp_path / "clip")
    model = speed.model_file("heatmap", "n", tmp_path / "no_weights", tmp_path)
    count, fps, model_fps, busy = speed.detect_benchmark(model.path, video, tmp_path / "out", threads=1)
    assert count == len(frames) and fps > 0 and model_fps > 0
    assert busy.startswith("read ") and "inference " in busy and "write " in busy
    with pytest.raises(speed.BenchmarkError, match="detect.py on .*missing"):
        speed.detect_benchmark(model.path, tmp_path / "missing.mp4", tmp_path / "out2", threads=1)
