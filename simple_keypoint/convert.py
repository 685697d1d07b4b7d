"""Masks to points, and labels to and from labelme and COCO keypoints.

Subcommands (each reads and writes the label format of ``simple_keypoint.labels``):

  masks DATASET        DATASET/images + DATASET/masks -> DATASET/labels: one point per 8-connected
                       mask component, its intensity-weighted centroid
  from-labelme DIR     labelme JSON files (point shapes) -> a labels folder
  to-labelme DATASET   DATASET/images + DATASET/labels -> one labelme JSON per labelled image
  from-coco FILE       a COCO keypoints JSON -> a labels folder
  to-coco DATASET      DATASET/images + DATASET/labels -> one COCO keypoints JSON

Pixel conventions (u, v are 0-based pixel indices; our normalised x = (u + 0.5) / W):

* labelme stores what its canvas shows: the image is painted from (0, 0) with pixel u covering
  [u, u + 1), and a click is stored as that continuous position, so a pixel's centre is u + 0.5.
  labelme x = u + 0.5 = normalised x * W; valid points lie in [0, W] x [0, H].
* COCO keypoints are pixel indices (integers in [0, W - 1] in COCO's own files), unlike COCO's
  boxes and polygons, which are continuous; detectron2 adds 0.5 to them on reading for this reason.
  COCO x = u = normalised x * W - 0.5; valid points lie in [-0.5, W - 0.5] x [-0.5, H - 0.5].
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from simple_keypoint.images import ImageError, find_images, read_image, to_gray
from simple_keypoint.labels import (
    LabelError,
    atomic_write,
    normalised_to_pixel,
    pixel_to_normalised,
    read_labels,
    write_labels,
)

# Added to every weight so a component of zero-valued pixels still has a centroid (its plain mean);
# SIRST's shipped labels were made with the same offset.
WEIGHT_OFFSET = 1e-6
LABELME_VERSION = "5.5.0"
POINT_LABEL = "target"


class ConvertError(ValueError):
    """An input file that cannot be converted; the message names the file and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


# --------------------------------------------------------------------------------------------
# Masks to points


def mask_components(mask: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (N, 2) pixel-index (u, v) and areas (N,) of the 8-connected components of mask > 0.

    Each centroid is weighted by ``gray + 1e-6`` over the component's pixels. Components come in
    OpenCV's labelling order (raster order of each component's first pixel).
    """
    centroids, areas, _ = mask_moments(mask, gray)
    return centroids, areas


def mask_moments(mask: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mask_components`' centroids and areas, and each component's spread: the covariance
    (N, 3) ``(var_u, var_v, cov_uv)`` in px^2 of its pixels about the centroid, with the same weights."""
    mask = np.asarray(mask)
    gray = np.asarray(gray, dtype=np.float64)
    if mask.ndim == 3:  # a colour mask: a pixel is target if any colour channel is (alpha ignored)
        mask = mask[:, :, :3].max(axis=2)
    if mask.ndim != 2 or gray.shape != mask.shape:
        raise ValueError(f"mask {mask.shape} and gray image {gray.shape} must be the same H x W")
    binary = (mask > 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return np.empty((0, 2), dtype=np.float64), np.empty(0, dtype=np.int64), np.empty((0, 3), dtype=np.float64)
    weights = gray + WEIGHT_OFFSET
    inside = labels > 0
    if not np.all(np.isfinite(weights[inside])) or np.any(weights[inside] <= 0):
        raise ValueError("gray values under the mask must be finite and >= 0")
    flat = labels.ravel()
    v_index, u_index = np.indices(labels.shape, dtype=np.float64)
    uu, vv, w = u_index.ravel(), v_index.ravel(), weights.ravel()

    def weighted_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=w * values, minlength=count)[1:]

    total = weighted_sum(np.ones_like(w))
    u, v = weighted_sum(uu) / total, weighted_sum(vv) / total
    # Central moments from raw ones (E[x^2] - E[x]^2), clipped at 0 against rounding.
    var_u = np.clip(weighted_sum(uu * uu) / total - u * u, 0.0, None)
    var_v = np.clip(weighted_sum(vv * vv) / total - v * v, 0.0, None)
    cov_uv = weighted_sum(uu * vv) / total - u * v
    return (np.stack([u, v], axis=1), stats[1:, cv2.CC_STAT_AREA].astype(np.int64),
            np.stack([var_u, var_v, cov_uv], axis=1))


def mask_points(mask: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """(N, 2) float64 pixel-index (u, v): one intensity-weighted centroid per 8-connected component.

    ``gray`` is the image in its raw value scale as ``simple_keypoint.images.to_gray`` gives it
    (OpenCV's BGR/BGRA -> gray for colour files), which is what reproduces SIRST's shipped labels.
    """
    return mask_components(mask, gray)[0]


# --------------------------------------------------------------------------------------------
# labelme


def _load_json(path: str | os.PathLike) -> object:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConvertError(path, f"cannot read: {e.strerror or e}") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConvertError(path, "not a text file (not UTF-8)") from None
    except json.JSONDecodeError as e:
        raise ConvertError(path, f"not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise ConvertError(path, "not valid JSON (nested too deeply)") from None


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value != int(value) or value < 1:
        return None
    return int(value)


def _finite_pair(value: object) -> tuple[float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in value):
        return None
    x, y = float(value[0]), float(value[1])
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


def read_labelme(path: str | os.PathLike, skipped: list[str] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Read a labelme JSON file: normalised points (N, 2) of its point shapes, and (width, height).

    Shapes of other types are left out; each is described in ``skipped`` if a list is given.
    Raises :class:`ConvertError` for an unreadable file, a wrong schema or a point outside the image.
    """
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise ConvertError(path, "not a labelme file (no 'shapes' list)")
    width, height = _positive_int(data.get("imageWidth")), _positive_int(data.get("imageHeight"))
    if width is None or height is None:
        raise ConvertError(path, "labelme file without a valid imageWidth/imageHeight")
    points = []
    for i, shape in enumerate(data["shapes"]):
        if not isinstance(shape, dict):
            raise ConvertError(path, f"shape {i} is not an object")
        kind = shape.get("shape_type", "polygon")  # labelme's default when the key is absent
        if kind != "point":
            if skipped is not None:
                skipped.append(f"{path}: shape {i} ({kind!r}, label {shape.get('label')!r}) is not a point, skipped")
            continue
        coords = shape.get("points")
        xy = _finite_pair(coords[0]) if isinstance(coords, list) and len(coords) == 1 else None
        if xy is None:
            raise ConvertError(path, f"point shape {i} needs 'points': [[x, y]] with finite numbers")
        if not (0.0 <= xy[0] <= width and 0.0 <= xy[1] <= height):
            raise ConvertError(path, f"point shape {i} ({xy[0]}, {xy[1]}) is outside the {width}x{height} image")
        points.append(xy)
    xy = np.array(points, dtype=np.float64).reshape(-1, 2)
    return np.clip(xy / np.array([width, height], dtype=np.float64), 0.0, 1.0), (width, height)


def write_labelme(path: str | os.PathLike, points_normalised: np.ndarray, image_path: str,
                  width: int, height: int) -> None:
    """Atomically write normalised points (N, 2) as a labelme JSON file of point shapes.

    ``image_path`` is stored as labelme's ``imagePath`` (labelme reads it relative to the JSON file).
    """
    xy = _checked_points(points_normalised) * np.array([width, height], dtype=np.float64)
    shapes = [{"label": POINT_LABEL, "points": [[float(x), float(y)]], "group_id": None, "description": "",
               "shape_type": "point", "flags": {}} for x, y in xy]
    document = {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": str(image_path),
                "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}
    atomic_write(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _checked_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"points must be (N, 2), got {points.shape}")
    xy = points[:, :2]
    if not np.all(np.isfinite(xy)) or np.any((xy < 0) | (xy > 1)):
        raise ValueError("points must be finite with x, y in [0, 1]")
    return xy


# --------------------------------------------------------------------------------------------
# COCO keypoints


def read_coco_keypoints(path: str | os.PathLike, problems: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read a COCO keypoints JSON: image ``file_name`` -> normalised points (N, 2).

    Every keypoint triple [x, y, v] with v > 0 of every annotation is one point (one annotation per
    point or per image, both read); v = 0 means "not labelled" in COCO and is left out. An image
    listed with no annotation reads as no target. A problem with one image (a bad annotation, a
    point outside it) raises :class:`ConvertError`, unless ``problems`` is a list: then the message
    goes there and that image is left out. A file-level problem always raises.
    """
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConvertError(path, "not a COCO file (no 'images' list)")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ConvertError(path, "'annotations' is not a list")
    images: dict[object, tuple[str, int, int]] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict):
            raise ConvertError(path, f"images[{i}] is not an object")
        name, width, height = image.get("file_name"), _positive_int(image.get("width")), _positive_int(image.get("height"))
        if (not isinstance(name, str) or not name or width is None or height is None
                or isinstance(image.get("id"), bool) or not isinstance(image.get("id"), (int, str))):
            raise ConvertError(path, f"images[{i}] needs id, file_name, width and height")
        if image["id"] in images:
            raise ConvertError(path, f"images[{i}]: image id {image['id']!r} is listed twice")
        images[image["id"]] = (name, width, height)
    pixels: dict[object, list[tuple[float, float]]] = {key: [] for key in images}
    bad: dict[object, str] = {}
    for i, annotation in enumerate(annotations):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if not isinstance(image_id, (int, str)) or image_id not in images:
            raise ConvertError(path, f"annotations[{i}] refers to no listed image (image_id {image_id!r})")
        if image_id in bad:
            continue
        name, width, height = images[image_id]
        keypoints = annotation.get("keypoints")
        if (not isinstance(keypoints, list) or len(keypoints) % 3
                or not all(isinstance(k, (int, float)) and not isinstance(k, bool) and math.isfinite(k) for k in keypoints)):
            bad[image_id] = f"annotations[{i}] of {name}: 'keypoints' must be finite numbers [x, y, v, ...]"
            continue
        for x, y, visibility in zip(keypoints[0::3], keypoints[1::3], keypoints[2::3], strict=True):
            if visibility <= 0:
                continue
            if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
                bad[image_id] = f"annotations[{i}] of {name}: point ({x}, {y}) is outside the {width}x{height} image"
                break
            pixels[image_id].append((float(x), float(y)))
    result: dict[str, np.ndarray] = {}
    for image_id, (name, width, height) in images.items():
        if image_id in bad:
            if problems is None:
                raise ConvertError(path, bad[image_id])
            problems.append(f"{path}: {bad[image_id]}, image skipped")
            continue
        if name in result:
            raise ConvertError(path, f"file_name {name!r} is listed twice")
        uv = np.array(pixels[image_id], dtype=np.float64).reshape(-1, 2)
        result[name] = np.clip(pixel_to_normalised(uv, width, height), 0.0, 1.0)
    return result


def write_coco_keypoints(path: str | os.PathLike, items: dict[str, tuple[np.ndarray, tuple[int, int]]]) -> None:
    """Atomically write a COCO keypoints JSON: ``items`` maps file_name -> (normalised (N, 2), (W, H)).

    One category ``target`` with a single keypoint and one annotation per point (its box 1 px wide,
    centred on the point in COCO's continuous box coordinates), the layout COCO readers expect.
    """
    images, annotations = [], []
    for image_id, (name, (points, (width, height))) in enumerate(items.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": int(width), "height": int(height)})
        uv = normalised_to_pixel(_checked_points(points), width, height)
        for u, v in uv:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": [float(u), float(v), 2], "num_keypoints": 1,
                "bbox": [float(u), float(v), 1.0, 1.0], "area": 1.0,
            })
    document = {"info": {"description": "point targets (simple_keypoint)"}, "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": POINT_LABEL, "supercategory": POINT_LABEL,
                                "keypoints": [POINT_LABEL], "skeleton": []}]}
    atomic_write(path, (json.dumps(document, ensure_ascii=False) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Command line


@dataclass
class Report:
    """What one command did: counts for the summary, and one line per problem."""

    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # outputs that already existed (no --overwrite)

    def keeps(self, path: Path, overwrite: bool) -> bool:
        """True (and noted) when ``path`` exists and may not be replaced."""
        if path.exists() and not overwrite:
            self.kept.append(str(path))
            return True
        return False

    def print(self, summary: str) -> int:
        for line in self.skipped:
            print(f"skipped: {line}", file=sys.stderr)
        for line in self.failed:
            print(f"error: {line}", file=sys.stderr)
        if self.kept:
            print(f"kept {len(self.kept)} existing output file(s), e.g. {self.kept[0]} (--overwrite replaces them)")
        print(summary + (f"; {len(self.failed)} failed" if self.failed else ""))
        return 1 if self.failed else 0


def _masks_by_stem(masks_dir: Path) -> dict[str, Path]:
    """Mask files by stem; a .png wins when one stem has several files."""
    found: dict[str, Path] = {}
    for path in find_images(masks_dir):
        if path.stem not in found or path.suffix.lower() == ".png":
            found[path.stem] = path
    return found


def _dataset_images(dataset: Path, report: Report) -> list[Path]:
    images_dir = dataset / "images"
    if not images_dir.is_dir():
        report.failed.append(f"{images_dir}: no such folder (a dataset is images/ + masks/ or labels/)")
        return []
    images = find_images(images_dir)
    if not images:
        report.failed.append(f"{images_dir}: no images in it")
    return images


def convert_masks(dataset: Path, overwrite: bool, empty_is_no_target: bool, progress: bool) -> int:
    """``masks`` subcommand: DATASET/images + DATASET/masks -> DATASET/labels."""
    report = Report()
    images = _dataset_images(dataset, report)
    masks_dir, labels_dir = dataset / "masks", dataset / "labels"
    if images and not masks_dir.is_dir():
        report.failed.append(f"{masks_dir}: no such folder")
        images = []
    if images:
        labels_dir.mkdir(parents=True, exist_ok=True)
    masks = _masks_by_stem(masks_dir) if images else {}
    points_total, no_target, per_image, areas = 0, 0, Counter(), []
    for image_path in tqdm(images, desc="masks -> points", unit="image", disable=not progress):
        label_path = labels_dir / f"{image_path.stem}.txt"
        if report.keeps(label_path, overwrite):
            continue
        mask_path = masks.get(image_path.stem)
        if mask_path is None:
            report.failed.append(f"{image_path}: no mask {masks_dir / image_path.stem}.png")
            continue
        try:
            gray = to_gray(read_image(image_path))
            mask = read_image(mask_path)
            if mask.shape[:2] != gray.shape:
                raise ConvertError(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                                              f"{image_path.name} is {gray.shape[1]}x{gray.shape[0]}")
            centroids, component_areas = mask_components(mask, gray)
        except (ImageError, ConvertError) as e:
            report.failed.append(str(e))
            continue
        except ValueError as e:  # channel counts or gray values mask_components cannot use
            report.failed.append(f"{mask_path}: {e}")
            continue
        if len(centroids) == 0 and not empty_is_no_target:
            report.skipped.append(f"{mask_path}: empty mask, no label written (--empty-is-no-target writes '0')")
            continue
        height, width = gray.shape
        try:
            write_labels(label_path, pixel_to_normalised(centroids, width, height).clip(0.0, 1.0))
        except OSError as e:
            report.failed.append(f"{label_path}: cannot write: {e.strerror or e}")
            continue
        points_total += len(centroids)
        no_target += len(centroids) == 0
        per_image[len(centroids)] += 1
        areas.extend(component_areas.tolist())
    written = sum(per_image.values())
    summary = (f"{len(images)} image(s): {written} label file(s) written with {points_total} point(s)"
               f" ({no_target} with no target), {len(report.skipped)} empty mask(s) skipped")
    if written:
        histogram = ", ".join(f"{n}: {c}" for n, c in sorted(per_image.items()))
        summary += f"\ncomponents per image (count: images) {histogram}"
    if areas:
        a = np.array(areas)
        summary += (f"\nmask area (px per component): min {a.min()}, median {np.median(a):g}, max {a.max()};"
                    f" {int((a >= 40).sum())} of {len(a)} >= 40 px")
    return report.print(summary)


def from_labelme(json_dir: Path, labels_dir: Path, overwrite: bool, progress: bool) -> int:
    """``from-labelme`` subcommand: every ``*.json`` in JSON_DIR -> LABELS_DIR/<json stem>.txt."""
    report = Report()
    files = sorted(p for p in json_dir.glob("*.json") if p.is_file()) if json_dir.is_dir() else []
    if not files:
        report.failed.append(f"{json_dir}: no labelme .json files in it" if json_dir.is_dir()
                             else f"{json_dir}: no such folder")
    else:
        labels_dir.mkdir(parents=True, exist_ok=True)
    points_total, written, shapes_total = 0, 0, 0
    for path in tqdm(files, desc="labelme -> labels", unit="file", disable=not progress):
        label_path = labels_dir / f"{path.stem}.txt"
        if report.keeps(label_path, overwrite):
            continue
        shapes_left_out: list[str] = []
        try:
            points, _ = read_labelme(path, skipped=shapes_left_out)
            write_labels(label_path, points)
        except ConvertError as e:
            report.failed.append(str(e))
            continue
        except OSError as e:
            report.failed.append(f"{label_path}: cannot write: {e.strerror or e}")
            continue
        if shapes_left_out:
            report.skipped.append(f"{path}: {len(shapes_left_out)} non-point shape(s) left out")
            shapes_total += len(shapes_left_out)
        points_total += len(points)
        written += 1
    return report.print(f"{len(files)} labelme file(s): {written} label file(s) written with {points_total} point(s);"
                        f" {shapes_total} non-point shape(s) left out")


def _labelled_images(dataset: Path, report: Report) -> list[tuple[Path, np.ndarray, tuple[int, int]]]:
    """(image, normalised points, (W, H)) of every image of DATASET that has a readable label file."""
    found = []
    images = _dataset_images(dataset, report)
    unlabelled = 0
    for image_path in images:
        label_path = dataset / "labels" / f"{image_path.stem}.txt"
        if not label_path.exists():
            unlabelled += 1
            continue
        try:
            points = read_labels(label_path)[:, :2]
            image = read_image(image_path)
        except (LabelError, ImageError) as e:
            report.failed.append(str(e))
            continue
        found.append((image_path, points, (image.shape[1], image.shape[0])))
    if unlabelled:
        report.skipped.append(f"{dataset / 'images'}: {unlabelled} image(s) with no label file (not labelled yet)")
    return found


def _refused(message: str) -> int:
    """An export whose output already exists: one line, nothing read or written, exit 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def to_labelme(dataset: Path, out_dir: Path, overwrite: bool) -> int:
    """``to-labelme`` subcommand: DATASET/images + labels -> OUT_DIR/<stem>.json, imagePath relative to it.
    An OUT_DIR already holding any of those files is refused (a mix of two exports) unless ``overwrite``."""
    if not overwrite and (dataset / "images").is_dir():
        taken = [path for image in find_images(dataset / "images")
                 if (dataset / "labels" / f"{image.stem}.txt").exists() and (path := out_dir / f"{image.stem}.json").exists()]
        if taken:
            return _refused(f"{out_dir} already holds {len(taken)} of the labelme file(s) this would write, "
                            f"e.g. {taken[0]} (--overwrite replaces them)")
    report = Report()
    items = _labelled_images(dataset, report)
    if items:
        out_dir.mkdir(parents=True, exist_ok=True)
    written, points_total = 0, 0
    for image_path, points, (width, height) in items:
        path = out_dir / f"{image_path.stem}.json"
        if report.keeps(path, overwrite):  # made by someone else meanwhile
            continue
        try:
            write_labelme(path, points, os.path.relpath(image_path, out_dir), width, height)
        except OSError as e:
            report.failed.append(f"{path}: cannot write: {e.strerror or e}")
            continue
        written += 1
        points_total += len(points)
    return report.print(f"{written} labelme file(s) written to {out_dir} with {points_total} point(s)")


def from_coco(coco_file: Path, labels_dir: Path, overwrite: bool) -> int:
    """``from-coco`` subcommand: a COCO keypoints JSON -> LABELS_DIR/<file_name stem>.txt."""
    report = Report()
    try:
        items = read_coco_keypoints(coco_file, problems=report.skipped)
    except ConvertError as e:
        report.failed.append(str(e))
        items = {}
    # a bad image inside the file is a failure too: its labels are not written
    report.failed.extend(report.skipped)
    report.skipped = []
    by_stem: dict[str, list[str]] = {}
    for name in items:
        by_stem.setdefault(Path(name.replace("\\", "/")).stem, []).append(name)
    if items:
        labels_dir.mkdir(parents=True, exist_ok=True)
    written, points_total = 0, 0
    for stem, names in by_stem.items():
        if len(names) > 1:
            report.failed.append(f"{coco_file}: file names {names} share the stem {stem!r}; none written")
            continue
        label_path = labels_dir / f"{stem}.txt"
        if report.keeps(label_path, overwrite):
            continue
        try:
            write_labels(label_path, items[names[0]])
        except OSError as e:
            report.failed.append(f"{label_path}: cannot write: {e.strerror or e}")
            continue
        written += 1
        points_total += len(items[names[0]])
    return report.print(f"{len(items)} image(s) in {coco_file}: {written} label file(s) written"
                        f" with {points_total} point(s)")


def to_coco(dataset: Path, out_file: Path, overwrite: bool) -> int:
    """``to-coco`` subcommand: DATASET/images + labels -> one COCO keypoints JSON."""
    if out_file.exists() and not overwrite:
        return _refused(f"{out_file} already exists (--overwrite replaces it)")
    report = Report()
    items = _labelled_images(dataset, report)
    if items:
        try:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            write_coco_keypoints(out_file, {path.name: (points, size) for path, points, size in items})
        except OSError as e:
            report.failed.append(f"{out_file}: cannot write: {e.strerror or e}")
            return report.print("nothing written")
    points_total = sum(len(points) for _, points, _ in items)
    return report.print(f"{len(items)} image(s) with {points_total} point(s) written to {out_file}" if items
                        else "nothing written")


def from_boxes(root: Path, out: Path, every: int, part: str, overwrite: bool, progress: bool) -> int:
    """``boxes`` subcommand: ROOT/videos + ROOT/boxes -> OUT/images, OUT/labels (one point per box) and
    OUT/masks (each box's bright region)."""
    from simple_keypoint.boxes import BoxError, box_videos, boxed_frames, split_videos

    report = Report()
    try:
        pairs = split_videos(box_videos(root), part)
    except BoxError as e:
        report.failed.append(str(e))
        return report.print("0 frames written")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    frames = points_total = 0
    for video, boxes in tqdm(pairs, desc="boxes -> points", unit="video", disable=not progress):
        try:
            for item in boxed_frames(video, boxes, every):
                stem = f"{item.video}_{item.index:05d}"
                image_path, label_path = out / "images" / f"{stem}.png", out / "labels" / f"{stem}.txt"
                if report.keeps(label_path, overwrite):
                    continue
                ok, png = cv2.imencode(".png", item.gray)
                if not ok:
                    raise BoxError(f"{video}: frame {item.index} cannot be encoded")
                atomic_write(image_path, png.tobytes())
                ok, mask = cv2.imencode(".png", item.mask.astype(np.uint8) * 255)
                if not ok:
                    raise BoxError(f"{video}: frame {item.index}: its mask cannot be encoded")
                atomic_write(out / "masks" / f"{stem}.png", mask.tobytes())
                h, w = item.gray.shape[:2]
                write_labels(label_path, pixel_to_normalised(item.points, w, h).clip(0.0, 1.0))
                frames += 1
                points_total += len(item.points)
        except BoxError as e:
            report.failed.append(str(e))
    return report.print(f"{len(pairs)} video(s) ({part}): {frames} frame(s) written with {points_total} point(s) to {out}")


def main(argv: list[str] | None = None) -> int:
    from simple_keypoint.options import HelpFormatter, Parser

    p = Parser(prog="simple-keypoint convert", description=__doc__.split("\n\n")[0],
               epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    defaults = HelpFormatter

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text, formatter_class=defaults)
        command.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
        return command

    masks = add("masks", "DATASET/images + DATASET/masks -> DATASET/labels (one point per 8-connected component)")
    masks.add_argument("dataset", type=Path, help="folder holding images/ and masks/ (masks/<stem>.png, target > 0)")
    masks.add_argument("--empty-is-no-target", action="store_true",
                       help="write '0' (looked, no target) for an empty mask instead of skipping it")
    masks.add_argument("--quiet", action="store_true", help="no progress bar")
    labelme_in = add("from-labelme", "labelme JSON files (point shapes) -> label files named by each JSON's stem")
    labelme_in.add_argument("json_dir", type=Path, help="folder of labelme .json files")
    labelme_in.add_argument("labels_dir", type=Path, help="folder to write <stem>.txt label files into")
    labelme_in.add_argument("--quiet", action="store_true", help="no progress bar")
    labelme_out = add("to-labelme", "DATASET/images + DATASET/labels -> one labelme JSON per labelled image")
    labelme_out.add_argument("dataset", type=Path, help="folder holding images/ and labels/")
    labelme_out.add_argument("--out", type=Path, default=None, help="output folder (default: DATASET/labelme)")
    coco_in = add("from-coco", "a COCO keypoints JSON -> label files named by each image's file_name stem")
    coco_in.add_argument("coco_file", type=Path, help="COCO JSON with images and keypoint annotations")
    coco_in.add_argument("labels_dir", type=Path, help="folder to write <stem>.txt label files into")
    coco_out = add("to-coco", "DATASET/images + DATASET/labels -> one COCO keypoints JSON")
    coco_out.add_argument("dataset", type=Path, help="folder holding images/ and labels/")
    coco_out.add_argument("--out", type=Path, default=None,
                          help="output file (default: DATASET/keypoints_coco.json)")
    boxes = add("boxes", "ROOT/videos + ROOT/boxes (frame,label,x,y,width,height per box) -> OUT/images + OUT/labels + "
                         "OUT/masks: one point per box, its bright region's centroid")
    boxes.add_argument("root", type=Path, help="folder holding videos/<name>.mp4 and boxes/<name>.csv (drone-ir's layout)")
    boxes.add_argument("out", type=Path, help="dataset folder to write images/ and labels/ into")
    boxes.add_argument("--every", type=int, default=30, help="keep every N-th frame that has boxes")
    boxes.add_argument("--part", choices=("train", "val", "test", "all"), default="all",
                       help="videos to convert: within each class in name order the 10th, 20th, ... video is val, "
                            "the 5th, 15th, ... test, the rest train")
    boxes.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        if args.command == "boxes":
            return from_boxes(args.root, args.out, max(args.every, 1), args.part, args.overwrite, not args.quiet)
        if args.command == "masks":
            return convert_masks(args.dataset, args.overwrite, args.empty_is_no_target, not args.quiet)
        if args.command == "from-labelme":
            return from_labelme(args.json_dir, args.labels_dir, args.overwrite, not args.quiet)
        if args.command == "to-labelme":
            return to_labelme(args.dataset, args.out or args.dataset / "labelme", args.overwrite)
        if args.command == "from-coco":
            return from_coco(args.coco_file, args.labels_dir, args.overwrite)
        return to_coco(args.dataset, args.out or args.dataset / "keypoints_coco.json", args.overwrite)
    except OSError as e:  # e.g. an output folder that cannot be made
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
