"""Masks to points (checked against SIRST's shipped labels), labelme and COCO interchange, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from simple_keypoint.convert import (
    ConvertError,
    main,
    mask_points,
    read_coco_keypoints,
    read_labelme,
    write_coco_keypoints,
    write_labelme,
)
from simple_keypoint.images import find_images, read_image, to_gray
from simple_keypoint.labels import read_labels, write_labels


def write_png(path: Path, image: np.ndarray) -> None:
    """Write through bytes so non-ASCII names work whatever OpenCV's imwrite does with them."""
    ok, data = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(data.tobytes())


# ------------------------------------------------------------------------------ mask_points


@pytest.mark.parametrize("split", ["train", "test"])
def test_mask_points_reproduce_sirst_labels(split: str) -> None:
    folder = REPO / "data" / split
    images = find_images(folder / "images")
    assert len(images) == {"train": 341, "test": 86}[split]
    worst = 0.0
    for image_path in images:
        gray = to_gray(read_image(image_path))
        points = mask_points(read_image(folder / "masks" / f"{image_path.stem}.png"), gray)
        height, width = gray.shape
        shipped = read_labels(folder / "labels" / f"{image_path.stem}.txt")[:, :2] * [width, height] - 0.5
        assert points.shape == shipped.shape, image_path.name
        worst = max(worst, float(np.abs(points - shipped).max(initial=0.0)))
    assert worst < 1e-3


@pytest.mark.parametrize("split", ["train", "test"])
def test_nudt_sirst_labels_are_the_converters(split: str) -> None:
    folder = REPO / "data" / "nudt-sirst" / split
    images = find_images(folder / "images")
    assert len(images) == {"train": 663, "test": 664}[split]
    for image_path in images:
        gray = to_gray(read_image(image_path))
        points = mask_points(read_image(folder / "masks" / image_path.name), gray)
        shipped = read_labels(folder / "labels" / f"{image_path.stem}.txt")[:, :2] * 256 - 0.5
        assert len(points) >= 1 and points.shape == shipped.shape, image_path.name
        np.testing.assert_allclose(points, shipped, atol=256 * 1e-6, err_msg=image_path.name)


def test_mask_points_weights_and_8_connectivity() -> None:
    mask = np.zeros((6, 8), np.uint8)
    mask[1, 1] = mask[2, 2] = 255  # diagonal neighbours: one component under 8-connectivity
    mask[4, 5:7] = 1
    gray = np.zeros((6, 8), np.float32)
    gray[1, 1], gray[2, 2] = 3.0, 1.0
    gray[4, 5], gray[4, 6] = 0.0, 0.0  # all-zero component: the plain mean, thanks to the 1e-6 offset
    points = mask_points(mask, gray)
    assert points.dtype == np.float64 and points.shape == (2, 2)
    w1, w2 = 3.0 + 1e-6, 1.0 + 1e-6
    np.testing.assert_allclose(points[0], [(1 * w1 + 2 * w2) / (w1 + w2)] * 2, atol=1e-12)
    np.testing.assert_allclose(points[1], [5.5, 4.0], atol=1e-12)


def test_mask_points_empty_16bit_colour_and_mismatch() -> None:
    gray = np.ones((5, 5), np.float32)
    assert mask_points(np.zeros((5, 5), np.uint16), gray).shape == (0, 2)
    mask16 = np.zeros((5, 5), np.uint16)
    mask16[2, 3] = 1  # a 16-bit mask whose target value would be black in 8 bits
    np.testing.assert_allclose(mask_points(mask16, gray), [[3.0, 2.0]])
    bgra = np.zeros((5, 5, 4), np.uint8)
    bgra[..., 3] = 255  # opaque alpha everywhere is not a target
    bgra[1, 1, 2] = 255
    np.testing.assert_allclose(mask_points(bgra, gray), [[1.0, 1.0]])
    with pytest.raises(ValueError, match="same H x W"):
        mask_points(np.zeros((4, 5), np.uint8), gray)


# ------------------------------------------------------------------------------ labelme


def test_labelme_pixel_convention(tmp_path: Path) -> None:
    # pixel u = 3 of a 10 px wide image: our x = 3.5 / 10; labelme's continuous coordinate is 3.5
    path = tmp_path / "a.json"
    write_labelme(path, np.array([[0.35, 0.25]]), "a.png", 10, 4)
    data = json.loads(path.read_text("utf-8"))
    assert data["shapes"][0]["shape_type"] == "point"
    assert data["shapes"][0]["points"] == [[3.5, 1.0]]
    assert (data["imageWidth"], data["imageHeight"], data["imagePath"]) == (10, 4, "a.png")


points_strategy = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=6)
size_strategy = st.tuples(st.integers(1, 5000), st.integers(1, 5000))


@settings(max_examples=150, deadline=None)
@given(points=points_strategy, size=size_strategy)
def test_labelme_round_trip(tmp_path_factory: pytest.TempPathFactory, points: list, size: tuple[int, int]) -> None:
    path = tmp_path_factory.mktemp("labelme") / "x.json"
    ours = np.array(points, dtype=np.float64).reshape(-1, 2)
    write_labelme(path, ours, "x.png", *size)
    back, read_size = read_labelme(path)
    assert read_size == size
    np.testing.assert_allclose(back, ours, atol=1e-9, rtol=0)


def test_labelme_non_point_shapes_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps({"imageWidth": 20, "imageHeight": 10, "imagePath": "mixed.png", "shapes": [
        {"label": "t", "shape_type": "point", "points": [[5.0, 5.0]]},
        {"label": "box", "shape_type": "rectangle", "points": [[1, 1], [3, 3]]},
        {"label": "poly", "points": [[1, 1], [3, 3], [1, 3]]},  # no shape_type: labelme's polygon
    ]}), "utf-8")
    skipped: list[str] = []
    points, size = read_labelme(path, skipped=skipped)
    np.testing.assert_allclose(points, [[0.25, 0.5]])
    assert size == (20, 10)
    assert len(skipped) == 2 and all(str(path) in line for line in skipped)


@pytest.mark.parametrize("content, reason", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    (b"[1, 2]", "no 'shapes' list"),
    (json.dumps({"shapes": []}).encode(), "imageWidth"),
    (json.dumps({"imageWidth": 10, "imageHeight": 10, "shapes": [
        {"shape_type": "point", "points": [[10.5, 2]]}]}).encode(), "outside the 10x10 image"),
    (json.dumps({"imageWidth": 10, "imageHeight": 10, "shapes": [
        {"shape_type": "point", "points": [[1, 2], [3, 4]]}]}).encode(), "needs 'points'"),
    (json.dumps({"imageWidth": 10, "imageHeight": 10, "shapes": [
        {"shape_type": "point", "points": [["1", 2]]}]}).encode(), "needs 'points'"),
])
def test_labelme_bad_files_name_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad_ü.json"
    path.write_bytes(content)
    with pytest.raises(ConvertError, match=reason) as info:
        read_labelme(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------ COCO


def test_coco_pixel_convention(tmp_path: Path) -> None:
    # pixel u = 3 is COCO keypoint x = 3 (pixel indices), not 3.5
    path = tmp_path / "c.json"
    write_coco_keypoints(path, {"a.png": (np.array([[0.35, 0.125]]), (10, 4))})
    data = json.loads(path.read_text("utf-8"))
    assert data["annotations"][0]["keypoints"] == [3.0, 0.0, 2]
    assert data["images"][0] == {"id": 1, "file_name": "a.png", "width": 10, "height": 4}
    assert data["categories"][0]["keypoints"] == ["target"]


@settings(max_examples=100, deadline=None)
@given(items=st.dictionaries(st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
                             st.tuples(points_strategy, size_strategy), max_size=4))
def test_coco_round_trip(tmp_path_factory: pytest.TempPathFactory, items: dict) -> None:
    path = tmp_path_factory.mktemp("coco") / "c.json"
    ours = {name: (np.array(points, dtype=np.float64).reshape(-1, 2), size) for name, (points, size) in items.items()}
    write_coco_keypoints(path, ours)
    back = read_coco_keypoints(path)
    assert set(back) == set(ours)
    for name, (points, _) in ours.items():
        np.testing.assert_allclose(back[name], points, atol=1e-9, rtol=0)


def test_coco_reads_per_image_keypoints_and_skips_bad_images(tmp_path: Path) -> None:
    path = tmp_path / "other_tool.json"
    path.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "sub/a.png", "width": 10, "height": 10},
                   {"id": 8, "file_name": "b.png", "width": 10, "height": 10},
                   {"id": 9, "file_name": "empty.png", "width": 10, "height": 10}],
        "annotations": [{"image_id": 7, "keypoints": [1, 2, 2, 0, 0, 0, 4.5, 9.5, 1]},
                        {"image_id": 8, "keypoints": [10, 2, 2]}],
    }), "utf-8")
    problems: list[str] = []
    items = read_coco_keypoints(path, problems=problems)
    np.testing.assert_allclose(items["sub/a.png"], [[0.15, 0.25], [0.5, 1.0]])
    assert items["empty.png"].shape == (0, 2)
    assert "b.png" not in items
    assert len(problems) == 1 and "b.png" in problems[0] and "outside" in problems[0]
    with pytest.raises(ConvertError, match="outside"):
        read_coco_keypoints(path)


@pytest.mark.parametrize("document, reason", [
    ({"annotations": []}, "no 'images' list"),
    ({"images": [{"id": 1, "file_name": "a.png"}]}, "needs id, file_name, width and height"),
    ({"images": [], "annotations": [{"image_id": 3, "keypoints": [1, 1, 2]}]}, "refers to no listed image"),
    ({"images": [{"id": [1], "file_name": "a.png", "width": 2, "height": 2}]}, "needs id"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 2, "height": 2}],
      "annotations": [{"image_id": [1], "keypoints": [1, 1, 2]}]}, "refers to no listed image"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 2, "height": 2}] * 2}, "listed twice"),
])
def test_coco_bad_schema(tmp_path: Path, document: dict, reason: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), "utf-8")
    with pytest.raises(ConvertError, match=reason):
        read_coco_keypoints(path)


# ------------------------------------------------------------------------------ the CLI


def make_bad_mask_set(root: Path) -> Path:
    """A dataset with one of each kind of mask the converter must handle or name."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((12, 16), 10, np.uint8)
    image[3, 4] = 200
    good = np.zeros((12, 16), np.uint8)
    good[3, 4] = 255
    write_png(root / "images" / "good.png", image)
    write_png(root / "masks" / "good.png", good)
    write_png(root / "images" / "目标_ü.png", image)
    write_png(root / "masks" / "目标_ü.png", good)
    write_png(root / "images" / "deep.png", image)
    write_png(root / "masks" / "deep.png", good.astype(np.uint16))  # 16-bit mask, target value 255
    write_png(root / "images" / "wrongsize.png", image)
    write_png(root / "masks" / "wrongsize.png", np.zeros((6, 8), np.uint8))
    write_png(root / "images" / "garbled.png", image)
    (root / "masks" / "garbled.png").write_bytes(b"\x89PNG not really")
    write_png(root / "images" / "empty.png", image)
    write_png(root / "masks" / "empty.png", np.zeros((12, 16), np.uint8))
    write_png(root / "images" / "nomask.png", image)
    return root


def test_cli_masks_on_a_bad_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_bad_mask_set(tmp_path / "set")
    assert main(["masks", str(root), "--quiet"]) == 1
    out, err = capsys.readouterr()
    labels = root / "labels"
    assert sorted(p.name for p in labels.iterdir()) == ["deep.txt", "good.txt", "目标_ü.txt"]
    for name in ("good", "deep", "目标_ü"):
        np.testing.assert_allclose(read_labels(labels / f"{name}.txt"), [[4.5 / 16, 3.5 / 12, 1.0]], atol=1e-6)
    err_lines = err.splitlines()
    for name, reason in [("wrongsize.png", "8x6"), ("garbled.png", "not a readable image"),
                         ("empty.png", "empty mask"), ("nomask.png", "no mask")]:
        hits = [line for line in err_lines if name in line]
        assert len(hits) == 1 and reason in hits[0], (name, err)
    assert "Traceback" not in err
    assert "7 image(s): 3 label file(s) written with 3 point(s)" in out and "3 failed" in out

    # a second run keeps what exists; --empty-is-no-target writes "0" for the empty mask
    (labels / "good.txt").write_text("0\n", "utf-8")
    assert main(["masks", str(root), "--quiet", "--empty-is-no-target"]) == 1
    out, _ = capsys.readouterr()
    assert (labels / "good.txt").read_text("utf-8") == "0\n"
    assert read_labels(labels / "empty.txt").shape == (0, 3)
    assert "kept 3 existing" in out
    assert main(["masks", str(root), "--quiet", "--overwrite"]) == 1
    assert read_labels(labels / "good.txt").shape == (1, 3)


def test_cli_masks_all_good_exits_zero(tmp_path: Path) -> None:
    root = tmp_path / "ok"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:3] = 255
    mask[6, 6] = 255
    write_png(root / "images" / "a.png", image)
    write_png(root / "masks" / "a.png", mask)
    result = run_python("-m", "simple_keypoint.convert", "masks", root)
    assert result.returncode == 0, result.stderr
    assert "1 image(s): 1 label file(s) written with 2 point(s)" in result.stdout
    assert "components per image (count: images) 2: 1" in result.stdout
    assert "0 of 2 >= 40 px" in result.stdout


def test_cli_empty_or_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["masks", str(tmp_path / "nothing")]) == 1
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "hollow" / "images").mkdir(parents=True)
    assert main(["masks", str(tmp_path / "hollow")]) == 1
    assert "no images" in capsys.readouterr().err


def tiny_labelled_set(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    write_png(root / "images" / "a.png", np.zeros((9, 13), np.uint8))
    write_png(root / "images" / "ü b.png", np.zeros((20, 7, 3), np.uint8))
    write_png(root / "images" / "unlabelled.png", np.zeros((4, 4), np.uint8))
    write_labels(root / "labels" / "a.txt", np.array([[0.123456, 0.654321], [1.0, 0.0]]))
    write_labels(root / "labels" / "ü b.txt", np.empty((0, 2)))
    return root


@pytest.mark.parametrize("tool", ["labelme", "coco"])
def test_cli_round_trip_through_other_tools(tmp_path: Path, capsys: pytest.CaptureFixture, tool: str) -> None:
    root = tiny_labelled_set(tmp_path / "set")
    back = tmp_path / "back"
    if tool == "labelme":
        assert main(["to-labelme", str(root)]) == 0
        assert sorted(p.name for p in (root / "labelme").iterdir()) == ["a.json", "ü b.json"]
        assert json.loads((root / "labelme" / "a.json").read_text("utf-8"))["imagePath"] == "../images/a.png"
        assert main(["to-labelme", str(root)]) == 2  # its files exist: refused, not replaced
        assert main(["from-labelme", str(root / "labelme"), str(back), "--quiet"]) == 0
    else:
        assert main(["to-coco", str(root)]) == 0
        assert main(["to-coco", str(root)]) == 2  # exists: refused, not replaced
        assert main(["from-coco", str(root / "keypoints_coco.json"), str(back)]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) with no label file" in err
    assert sorted(p.name for p in back.iterdir()) == ["a.txt", "ü b.txt"]
    for name in ("a.txt", "ü b.txt"):
        np.testing.assert_allclose(read_labels(back / name), read_labels(root / "labels" / name), atol=1e-9, rtol=0)


def test_cli_from_labelme_names_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "lm"
    folder.mkdir()
    write_labelme(folder / "ok.json", np.array([[0.5, 0.5]]), "ok.png", 10, 10)
    (folder / "broken.json").write_text("{", "utf-8")
    (folder / "mixed.json").write_text(json.dumps({"imageWidth": 4, "imageHeight": 4, "shapes": [
        {"shape_type": "point", "points": [[1, 1]]}, {"shape_type": "circle", "points": [[1, 1], [2, 2]]}]}), "utf-8")
    assert main(["from-labelme", str(folder), str(tmp_path / "labels"), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["mixed.txt", "ok.txt"]
    assert any("broken.json" in line and "not valid JSON" in line for line in err.splitlines())
    assert any("mixed.json" in line and "1 non-point shape(s)" in line for line in err.splitlines())
    assert "1 non-point shape(s) left out" in out and "1 failed" in out
