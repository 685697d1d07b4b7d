"""The dataset reader (what it finds, skips and reports by name) and training crops (points move with pixels)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from simple_keypoint.dataset import CropDataset, DatasetError, Sample, load_dataset, scan, split
from simple_keypoint.labels import pixel_to_normalised, write_labels


def add_image(root, name, size=(24, 32), points=(), label=True):
    """images/<name> (uint8 noise, a bright pixel at each point) and labels/<stem>.txt for ``points`` (u, v)."""
    h, w = size
    image = np.random.default_rng(len(name)).integers(0, 60, size, dtype=np.uint8)
    for u, v in points:
        image[int(round(v)), int(round(u))] = 255
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    path = root / "images" / name
    path.write_bytes(cv2.imencode(path.suffix, image)[1].tobytes())
    if label:
        write_labels(root / "labels" / f"{path.stem}.txt", pixel_to_normalised(np.reshape(points, (-1, 2)), w, h))
    return image


def test_scan_reports_unpaired_files_by_name(tmp_path):
    add_image(tmp_path, "a.png", points=[(3, 4)])
    add_image(tmp_path, "b.PNG", points=[(5, 6)])  # suffix case does not matter
    add_image(tmp_path, "lonely.png", label=False)
    (tmp_path / "labels" / "ghost.txt").write_text("0\n")
    (tmp_path / "images" / "notes.md").write_text("not an image")
    pairs, report = scan(tmp_path)
    assert [(i.name, lab.name) for i, lab in pairs] == [("a.png", "a.txt"), ("b.PNG", "b.txt")]
    assert report.unlabelled == ["lonely.png"]
    assert report.orphan_labels == ["ghost.txt"]
    text = "\n".join(report.lines())
    assert "lonely.png" in text and "ghost.txt" in text


def test_scan_without_images_folder(tmp_path):
    with pytest.raises(DatasetError, match="images"):
        scan(tmp_path)


def test_load_dataset_points_and_failures(tmp_path):
    add_image(tmp_path, "one.png", points=[(3, 4)])
    add_image(tmp_path, "none.png", points=[])
    add_image(tmp_path, "badlabel.png", points=[(1, 1)])
    (tmp_path / "labels" / "badlabel.txt").write_text("2\n0.5 0.5\n")
    (tmp_path / "images" / "broken.png").write_bytes(b"garbage")
    (tmp_path / "labels" / "broken.txt").write_text("0\n")
    add_image(tmp_path, "dup.png", points=[(7, 8), (7, 8)])
    samples, report = load_dataset(tmp_path, progress=False)
    by_name = {s.name: s for s in samples}
    assert sorted(by_name) == ["dup.png", "none.png", "one.png"]
    np.testing.assert_allclose(by_name["one.png"].points, [[3, 4]], atol=1e-4)
    assert by_name["none.png"].points.shape == (0, 2)
    np.testing.assert_allclose(by_name["dup.png"].points, [[7, 8]], atol=1e-4)
    assert report.duplicate_points == ["dup.txt"]
    assert report.used == 3
    assert len(report.failures) == 2
    assert any("badlabel.txt:1" in f for f in report.failures)
    assert any("broken.png" in f for f in report.failures)


def test_regression_filter_counts_skipped(tmp_path):
    add_image(tmp_path, "one_a.png", points=[(3, 4)])
    add_image(tmp_path, "one_b.png", points=[(10, 12)])
    add_image(tmp_path, "two.png", points=[(3, 4), (20, 10)])
    add_image(tmp_path, "three.png", points=[(3, 4), (20, 10), (9, 9)])
    add_image(tmp_path, "zero.png", points=[])
    samples, report = load_dataset(tmp_path, max_targets=1, min_targets=1, progress=False)
    assert sorted(s.name for s in samples) == ["one_a.png", "one_b.png"]
    assert report.used == 2
    skipped = sorted(name for names in report.skipped.values() for name in names)
    assert skipped == ["three.png", "two.png", "zero.png"]
    text = "\n".join(report.lines())
    assert "2 image(s) usable" in text
    assert sum(len(v) for v in report.skipped.values()) == 3


def test_split_is_deterministic_and_disjoint():
    samples = [Sample(f"s{i}", np.zeros((4, 4), np.float32), np.zeros((0, 2))) for i in range(20)]
    train, val = split(samples, 0.1, seed=3)
    assert len(val) == 2 and len(train) == 18
    assert {s.name for s in train}.isdisjoint(s.name for s in val)
    assert [s.name for s in split(samples, 0.1, seed=3)[1]] == [s.name for s in val]
    assert split(samples[:1], 0.1, seed=0) == (samples[:1], [])  # never everything in validation


BRIGHT = 100.0


def bright_sample(size, points, seed):
    """A sample whose only bright pixels are at the labelled points (the pixel holding each point)."""
    image = np.random.default_rng(seed).normal(0, 0.3, size).astype(np.float32)
    for u, v in points:
        image[int(round(v)), int(round(u))] = BRIGHT
    return Sample(f"s{seed}", image, np.asarray(points, np.float64).reshape(-1, 2))


@pytest.mark.parametrize("keep_one", [False, True])
def test_crops_keep_points_on_their_pixels(keep_one):
    samples = [
        bright_sample((50, 70), [(10, 20)], 0),  # integer point
        bright_sample((50, 70), [(33.3, 12.7), (60.8, 44.2), (2.2, 3.6)], 1),  # sub-pixel, near the border too
        bright_sample((20, 25), [(21.4, 17.6)], 2),  # smaller than the crop: zero padding
        bright_sample((60, 60), [], 3),  # no target
    ]
    size = 32
    kept = dropped = 0
    for seed in range(60):
        dataset = CropDataset(samples, size, seed=seed, augment=True, keep_one=keep_one, target_fraction=0.5)
        for i in range(len(dataset)):
            image, points, count = dataset[i]
            image, points = image[0].numpy(), points[:count].numpy().astype(np.float64)
            assert image.shape == (size, size)
            bright = {tuple(p) for p in np.argwhere(image > BRIGHT / 3)[:, ::-1].tolist()}  # (u, v) of bright pixels
            at = {(int(round(u)), int(round(v))) for u, v in points}
            # Each returned point sits on a bright pixel, and every bright pixel in the crop is a returned point.
            assert at == bright, (seed, i, points, sorted(bright))
            assert len(at) == count
            assert np.all(points > -0.5) and np.all(points < size - 0.5)
            if keep_one and len(samples[i].points):
                assert count >= 1
            kept += count
            dropped += len(samples[i].points) - count
    assert kept > 0 and dropped > 0  # both cases were exercised


def test_crops_are_deterministic_under_a_seed():
    samples = [bright_sample((50, 70), [(33.3, 12.7)], 1), bright_sample((40, 40), [(5, 5)], 2)]

    def items(seed, epoch):
        dataset = CropDataset(samples, 32, seed=seed)
        dataset.epoch = epoch
        return [dataset[i] for i in range(len(dataset))]

    for (a_img, a_pts, a_n), (b_img, b_pts, b_n) in zip(items(5, 2), items(5, 2), strict=True):
        assert a_n == b_n and np.array_equal(a_img, b_img) and np.array_equal(a_pts, b_pts)
    changed = [not np.array_equal(a[0], b[0]) for a, b in zip(items(5, 2), items(5, 3), strict=True)]
    assert any(changed)  # a new epoch gives new crops


def test_crops_without_augmentation_are_plain_crops():
    sample = bright_sample((50, 70), [(33.3, 12.7)], 1)
    image, points, count = CropDataset([sample], 32, seed=0, augment=False, keep_one=True)[0]
    assert count == 1
    # Find the crop in the image: the offset is an integer and the point moved by it exactly.
    u, v = points[0].numpy().astype(np.float64)
    x0, y0 = 33.3 - u, 12.7 - v
    assert abs(x0 - round(x0)) < 1e-4 and abs(y0 - round(y0)) < 1e-4
    x0, y0 = int(round(x0)), int(round(y0))
    crop = image[0].numpy()
    ys, xs = slice(max(y0, 0), min(y0 + 32, 50)), slice(max(x0, 0), min(x0 + 32, 70))
    np.testing.assert_array_equal(crop[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0], sample.image[ys, xs])


def test_unblocked_drops_points_on_blocked_pixels_only():
    blocked = np.zeros((10, 12), bool)
    blocked[2:5, 3:6] = True
    sample = Sample("x", np.zeros((10, 12), np.float32), np.zeros((0, 2)), blocked)
    points = np.array([[4.2, 3.4, 0.9], [4.6, 5.4, 0.8], [11.7, 9.6, 0.5], [2.4, 2.0, 0.4]])
    np.testing.assert_array_equal(sample.unblocked(points), points[[1, 2, 3]])  # 4.6, 5.4 rounds to row 5: free
    assert Sample("y", sample.image, sample.points).unblocked(points) is points


def test_clutter_zoom_enlarges_clutter_crops_only_when_asked():
    """--clutter-zoom: a clutter crop shows a smaller region enlarged (fewer distinct edges per crop);
    zoom 1 keeps the crops and their random stream exactly as before."""
    from simple_keypoint.dataset import MixedCropDataset

    rng = np.random.default_rng(0)
    frame = np.zeros((200, 200), np.float32)
    frame[:, ::4] = 1.0  # stripes 4 px apart: enlarged, they are farther apart
    clutter = [Sample("ground", frame + 0.01 * rng.standard_normal(frame.shape).astype(np.float32), np.zeros((0, 2)))]

    def crops(zoom):
        d = MixedCropDataset([[]], [0.0], 20, 64, seed=3, clutter=clutter, clutter_share=1.0, clutter_zoom=zoom)
        return [d._clutter_crop(np.random.default_rng(i)) for i in range(20)]

    plain, zoomed, same = crops(1.0), crops(3.0), crops(1.0)
    assert all(c.shape == (64, 64) for c in plain + zoomed)
    assert all(np.array_equal(a, b) for a, b in zip(plain, same, strict=True))
    def edges(c):
        return int((np.abs(np.diff(c[32] > 0.5)) > 0).sum())
    assert np.mean([edges(c) for c in zoomed]) < 0.8 * np.mean([edges(c) for c in plain])
