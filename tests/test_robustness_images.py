"""Bad and unusual image files: the reader loads them correctly or says one clear line, and
detect.py goes on with the rest, lists the failures at the end and exits 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import PATIENCE
from PIL import Image  # installed with matplotlib

from simple_keypoint.checkpoint import save_checkpoint
from simple_keypoint.dataset import CropDataset, Sample
from simple_keypoint.images import ImageError, load_gray, read_image
from simple_keypoint.predict import Localizer, build_model, load_model

REPO = Path(__file__).resolve().parents[1]
TINY = {"heatmap": {"widths": (4, 8), "full_res_channels": 2}, "regression": {"widths": (4, 8), "full_res_channels": 2}}


def tiny_checkpoint(path: Path, method: str = "heatmap", conf: float = 0.3) -> Path:
    """An untrained but complete checkpoint, small enough to run on huge images quickly."""
    torch.manual_seed(0)
    net = build_model(method, TINY[method])
    save_checkpoint(path, {"method": method, "model_args": TINY[method], "model_state": net.state_dict(),
                           "decode": {"conf": conf}})
    return path


def spot_image(h: int = 48, w: int = 64, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(10, 40, (h, w)).astype(np.float64)
    image[h // 2, w // 3] = 250
    if dtype == np.uint16:
        return (image * 200).astype(np.uint16)
    if dtype == np.float32:
        return (image / 255).astype(np.float32)
    return image.astype(dtype)


def encoded(ext: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def write_kinds(folder: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Write one file of each kind; returns {name: (h, w)} that must load and {name: reason} that must fail."""
    folder.mkdir(parents=True, exist_ok=True)
    gray = spot_image()
    png, jpg = encoded(".png", gray), encoded(".jpg", gray)
    bad = {
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "corrupt.png": png[:60] + bytes(300) + png[360:],
        "corrupt.jpg": jpg[:20] + bytes(300) + jpg[320:],  # tables and frame header zeroed
        "zero_bytes.jpg": b"",
        "text_file.jpg": b"this is not an image\n",
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    reasons = {name: "not a readable image (corrupt, truncated or not an image)" for name in bad}
    reasons["zero_bytes.jpg"] = "empty file (0 bytes)"

    good = {}
    cv2.imwrite(str(folder / "one_pixel.png"), np.array([[200]], np.uint8))
    good["one_pixel.png"] = (1, 1)
    cv2.imwrite(str(folder / "sixteen_bit.png"), spot_image(dtype=np.uint16))
    good["sixteen_bit.png"] = gray.shape
    cv2.imwrite(str(folder / "four_channel.png"), np.dstack([gray, gray, gray, np.full_like(gray, 128)]))
    good["four_channel.png"] = gray.shape
    palette = Image.fromarray(gray // 32, mode="L").convert("P")
    palette.putpalette([v for i in range(256) for v in (min(i * 32, 255),) * 3])
    palette.save(folder / "palette.png")
    good["palette.png"] = gray.shape
    cv2.imwrite(str(folder / "float32.tiff"), spot_image(dtype=np.float32))
    good["float32.tiff"] = gray.shape
    (folder / "ü ñ 中 plain.png").write_bytes(png)
    good["ü ñ 中 plain.png"] = gray.shape
    return good, reasons


def test_reader_loads_or_says_one_line(tmp_path: Path) -> None:
    good, reasons = write_kinds(tmp_path)
    for name, shape in good.items():
        gray = load_gray(tmp_path / name)
        assert gray.shape == shape and gray.dtype == np.float32 and np.isfinite(gray).all(), name
    for name, reason in reasons.items():
        with pytest.raises(ImageError) as caught:
            load_gray(tmp_path / name)
        assert str(caught.value) == f"{tmp_path / name}: {reason}"


def test_kinds_keep_their_content(tmp_path: Path) -> None:
    """16-bit, 4-channel, palette and float TIFF read as the same picture, not just 'something'."""
    write_kinds(tmp_path)
    reference = load_gray(tmp_path / "ü ñ 中 plain.png")
    for name in ("sixteen_bit.png", "four_channel.png", "float32.tiff"):
        assert np.corrcoef(load_gray(tmp_path / name).ravel(), reference.ravel())[0, 1] > 0.99, name
    assert read_image(tmp_path / "sixteen_bit.png").dtype == np.uint16
    assert read_image(tmp_path / "float32.tiff").dtype == np.float32
    # The palette file holds indices gray // 32 mapped to gray levels: it must read as those levels.
    palette = load_gray(tmp_path / "palette.png")
    assert np.argmax(palette) == np.argmax(reference)


def test_jpeg_with_damaged_scan_data_loads(tmp_path: Path) -> None:
    """A known limit: libjpeg repairs damaged entropy data (grey blocks) and only warns on stderr,
    so such a file loads at its full size; documented in docs/bad_inputs.md."""
    jpg = encoded(".jpg", spot_image())
    (tmp_path / "damaged.jpg").write_bytes(jpg[:-200] + bytes(100) + jpg[-100:])
    assert load_gray(tmp_path / "damaged.jpg").shape == spot_image().shape


def test_reader_prints_nothing_itself(tmp_path: Path) -> None:
    """OpenCV's own WARN/ERROR lines must not pile up next to the one line we report."""
    write_kinds(tmp_path)
    code = ("import sys; from simple_keypoint.images import load_gray, ImageError\n"
            "for p in sys.argv[1:]:\n    try: load_gray(p)\n    except ImageError: pass\n")
    files = [str(tmp_path / n) for n in ("truncated.png", "text_file.jpg", "zero_bytes.jpg")]
    run = subprocess.run([sys.executable, "-c", code, *files], cwd=REPO, capture_output=True, text=True, timeout=PATIENCE)
    assert run.returncode == 0 and "WARN" not in run.stderr and "ERROR" not in run.stderr, run.stderr


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_one_pixel_image_through_the_model(tmp_path: Path, method: str) -> None:
    model = load_model(tiny_checkpoint(tmp_path / "m.pt", method))
    points = model.predict(np.array([[200]], np.uint8), conf=0.0)
    assert points.shape[1] == 3 and len(points) >= 1
    # Padded to the stride, the point must still land inside the single pixel's reach.
    assert np.all(np.abs(points[:, :2]) <= model.stride)
    if method == "heatmap":
        assert model.heatmap(np.array([[200]], np.uint8)).shape == (1, 1)


@pytest.mark.parametrize("keep_one", [False, True])
def test_one_pixel_image_in_training_crops(keep_one: bool) -> None:
    sample = Sample("one.png", np.ones((1, 1), np.float32), np.array([[0.0, 0.0]]))
    crops = CropDataset([sample], crop_size=16, seed=0, augment=True, keep_one=keep_one)
    for epoch in range(6):
        crops.epoch = epoch
        image, points, count = crops[0]
        assert image.shape == (1, 16, 16) and bool(image.isfinite().all())
        if keep_one:
            assert count == 1
        if count:  # the pixel's value sits exactly under the moved point
            u, v = points[0].round().int().tolist()
            assert abs(float(image[0, v, u]) - float(image.max())) < 0.5


def test_8000_square_image(tmp_path: Path) -> None:
    """A very large frame loads, runs (downscaled inside, points mapped back) and finds its bright spot."""
    big = np.zeros((8000, 8000), np.uint8)
    big[6000:6004, 2000:2004] = 255
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), big)
    gray = load_gray(path)
    assert gray.shape == (8000, 8000)
    torch.manual_seed(0)
    net = build_model("heatmap", TINY["heatmap"])
    points = Localizer("heatmap", net, conf=0.0).predict_standardised(gray, max_points=1)
    assert points.shape == (1, 3) and 0 <= points[0, 0] < 8000 and 0 <= points[0, 1] < 8000
    del gray


def run_detect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "detect.py", "--quiet", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=PATIENCE)


def test_detect_goes_on_and_lists_failures(tmp_path: Path) -> None:
    good, reasons = write_kinds(tmp_path / "in")
    weights = tiny_checkpoint(tmp_path / "w.pt")
    before = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    run = run_detect("--weights", str(weights), "--source", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    tail = run.stdout.strip().splitlines()
    summary = next(i for i, line in enumerate(tail) if "image(s) done" in line)
    assert tail[summary].startswith(f"{len(good)} image(s) done") and f"{len(reasons)} failure(s)" in tail[summary]
    failed = tail[summary + 1:]
    assert sorted(failed) == sorted(f"  failed: {tmp_path / 'in' / n}: {r}" for n, r in reasons.items())
    for name in good:
        stem = Path(name).stem
        assert (tmp_path / "out" / "labels" / f"{stem}.txt").is_file(), name
        assert cv2.imread(str(tmp_path / "out" / "overlays" / f"{stem}.jpg")) is not None or not stem.isascii(), name
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before  # inputs untouched


def test_detect_all_good_exits_0(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), spot_image())
    run = run_detect("--weights", str(tiny_checkpoint(tmp_path / "w.pt")), "--source", str(tmp_path / "in"),
                     "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "0 failure(s)" in run.stdout and "failed:" not in run.stdout
