"""detect.py (the top-level script, run in-process) and the evaluate CLI on awkward folders: output next to or around the input, empty
and missing folders, non-ASCII paths. Run in-process (same main() as the command line)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from simple_keypoint.checkpoint import save_checkpoint
from simple_keypoint.detect import DetectOptions, list_sources
from simple_keypoint.detect import detect as run_detect
from simple_keypoint.evaluate import main as evaluate_main
from simple_keypoint.labels import write_labels
from simple_keypoint.predict import build_model, load_model

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("detect_cli", REPO / "detect.py")
detect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(detect)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    args = {"widths": (4, 8), "full_res_channels": 2}
    path = tmp_path / "w.pt"
    save_checkpoint(path, {"method": "heatmap", "model_args": args, "model_state": build_model("heatmap", args).state_dict(),
                           "decode": {"conf": 0.3}})
    return path


def images(folder: Path, names: tuple[str, ...] = ("a.png", "b.jpg")) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        image = np.full((20, 24), 20 + i, np.uint8)
        image[10, 12] = 250
        cv2.imwrite(str(folder / name), image)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def run(main, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr without progress bars (evaluate draws them on stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    err = "".join(line for line in err.splitlines(keepends=True) if "\r" not in line and line.strip())
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["same", "overlays", "labels", "inside_overlays", "file"])
def test_detect_refuses_to_write_over_or_among_its_input(tmp_path: Path, weights: Path, layout: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    source = {"same": out, "overlays": out / "overlays", "labels": out / "labels",
              "inside_overlays": out / "overlays" / "old run", "file": out / "overlays" / "a.png"}[layout]
    images(source.parent if layout == "file" else source, ("a.png", "a.jpg") if layout != "file" else ("a.png",))
    before = snapshot(tmp_path)
    code, _, err = run(detect.main, ["--weights", str(weights), "--source", str(source), "--out", str(out), "--quiet"], capsys)
    assert code == 2
    assert err == f"error: output folder {out} would mix results with the input images; choose another --out\n"
    assert snapshot(tmp_path) == before  # nothing written, nothing overwritten


def test_detect_output_never_overwrites_input(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    """Input images named like outputs (a.jpg next to a.png, an image inside a sibling folder) stay untouched."""
    source = tmp_path / "frames"
    before = images(source, ("a.png", "a.jpg", "labels.png"))
    code, out, _ = run(detect.main, ["--weights", str(weights), "--source", str(source), "--out", str(source / "results"),
                                     "--quiet"], capsys)
    assert code == 0, out
    assert {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (source / "results" / "labels").iterdir()) == ["a.txt", "a_png.txt", "labels.txt"]


def test_detect_output_blocked_by_a_file(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    images(tmp_path / "in")
    (tmp_path / "out").write_text("not a folder")
    code, _, err = run(detect.main, ["--weights", str(weights), "--source", str(tmp_path / "in"),
                                     "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 2 and err.startswith(f"error: cannot create output folder {tmp_path / 'out'}: ") and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["empty", "missing", "only_text", "empty_glob"])
def test_detect_nothing_to_do(tmp_path: Path, weights: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "leer ü 空"
    if kind != "missing":
        folder.mkdir()
    if kind == "only_text":
        (folder / "notes.txt").write_text("hello")
    source = str(folder / "*.png") if kind == "empty_glob" else str(folder)
    code, _, err = run(detect.main, ["--weights", str(weights), "--source", source, "--out", str(tmp_path / "o")], capsys)
    expected = f"{source}: no such file or folder" if kind == "missing" else f"no images or videos found at {source}"
    assert code == 2 and err == f"error: {expected}\n"
    assert not (tmp_path / "o").exists()


def test_detect_non_ascii_everything(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "图像 ü"
    images(source, ("кадр 1.png", "フレーム.jpg"))
    w = tmp_path / "poids é.pt"
    w.write_bytes(weights.read_bytes())
    out = tmp_path / "résultats 結果"
    code, stdout, _ = run(detect.main, ["--weights", str(w), "--source", str(source), "--out", str(out), "--quiet"], capsys)
    assert code == 0, stdout
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["кадр 1.txt", "フレーム.txt"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["кадр 1.jpg", "フレーム.jpg"]


def dataset(root: Path, n: int = 2) -> Path:
    images(root / "images", tuple(f"f{i}.png" for i in range(n)))
    (root / "labels").mkdir(exist_ok=True)
    for i in range(n):
        write_labels(root / "labels" / f"f{i}.txt", np.array([[(12 + 0.5) / 24, (10 + 0.5) / 20]]))
    return root


def test_evaluate_empty_missing_and_non_ascii(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "vacío"
    (empty / "images").mkdir(parents=True)
    code, out, err = run(evaluate_main, ["--weights", str(weights), "--data", str(empty)], capsys)
    assert code == 1 and err == f"error: {empty}: no usable labelled images\n"
    assert f"{empty}: 0 image(s) usable" in out
    missing = tmp_path / "nirgends"
    code, _, err = run(evaluate_main, ["--weights", str(weights), "--data", str(missing)], capsys)
    assert code == 1 and err == f"error: {missing}: no such folder\n"
    # A good non-ASCII folder next to the empty one: scored, but the exit code still says one failed.
    good = dataset(tmp_path / "テスト ü")
    code, out, err = run(evaluate_main, ["--weights", str(weights), "--data", str(good), str(empty)], capsys)
    assert code == 1 and err == f"error: {empty}: no usable labelled images\n"
    table = out.splitlines()[-2:]
    assert table[1].startswith(str(good)) and table[1].split()[len(str(good).split()):][:2] == ["2", "2"]
    code, out, err = run(evaluate_main, ["--weights", str(weights), "--data", str(good)], capsys)
    assert code == 0 and err == ""


def test_evaluate_reports_bad_files_and_exits_1(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    data = dataset(tmp_path / "d", 3)
    (data / "labels" / "f1.txt").write_text("1\n0.5\n")
    (data / "images" / "f2.png").write_bytes(b"")
    code, out, _ = run(evaluate_main, ["--weights", str(weights), "--data", str(data)], capsys)
    assert code == 1
    assert f"    {data / 'labels' / 'f1.txt'}:2: expected 'x y', 'x y score' or 'x y score uncertain', got '0.5'" in out.splitlines()
    assert f"    {data / 'images' / 'f2.png'}: empty file (0 bytes)" in out.splitlines()


def test_detect_one_file_raising_does_not_stop_the_batch(tmp_path: Path, weights: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenCV or torch error on one file (e.g. out of memory on a huge frame) is one failure line."""
    images(tmp_path / "in", ("a.png", "b.png", "c.png"))
    model = load_model(weights)
    predict = model.predict_with_heatmap

    def flaky(image, **kwargs):
        if image[0, 0] == 21:  # b.png
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes.")
        return predict(image, **kwargs)

    monkeypatch.setattr(model, "predict_with_heatmap", flaky)
    sources = list_sources(str(tmp_path / "in"))
    for sub in ("overlays", "labels"):
        (tmp_path / "out" / sub).mkdir(parents=True)
    report = run_detect(model, sources, tmp_path / "out", DetectOptions(max_points=5))
    assert report.frames == 2
    assert report.failures == [f"{sources[1]}: RuntimeError: DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes."]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["a.txt", "c.txt"]
