"""The one dataset reader both methods train on.

A dataset folder holds ``images/<stem>.<ext>`` and ``labels/<stem>.txt``. Reading reports every
problem (image without label, label without image, unreadable image, bad label) with counts and
names instead of silently dropping files. Training samples are random crops with flips,
contrast/brightness and noise, and the points are moved exactly with the pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from simple_keypoint.convert import mask_moments
from simple_keypoint.images import ImageError, find_images, load_gray, read_image, standardise, to_gray
from simple_keypoint.labels import LabelError, normalised_to_pixel, read_labels


class DatasetError(ValueError):
    """A dataset folder that cannot be used at all."""


@dataclass
class Sample:
    name: str
    image: np.ndarray  # H x W float32, standardised
    points: np.ndarray  # (N, 2) float64 pixel-index coordinates (u, v)
    # Pixels that are neither target nor background (a clutter set's boxes of other objects):
    # no crop of clutter covers them, and no prediction on them is counted.
    blocked: np.ndarray | None = None
    source: str = ""  # the dataset folder it was read from
    # Each point's object extent where a mask gives it: the covariance (N, 3) (var_u, var_v, cov_uv)
    # in px^2 of its mask component (zeros: a point without a known extent). None: no masks.
    spreads: np.ndarray | None = None

    def points_with_spreads(self) -> np.ndarray:
        """(N, 5) ``u, v, var_u, var_v, cov_uv``: the points and their objects' spreads (0: unknown)."""
        spreads = self.spreads if self.spreads is not None else np.zeros((len(self.points), 3))
        return np.hstack([self.points.reshape(-1, 2), spreads.reshape(-1, 3)])

    def unblocked(self, points: np.ndarray) -> np.ndarray:
        """The rows of ``points`` (N, 2+) ``(u, v, ...)`` that do not fall on a blocked pixel."""
        if self.blocked is None:
            return points
        h, w = self.blocked.shape
        rows = points[:, 1].round().astype(int).clip(0, h - 1)
        cols = points[:, 0].round().astype(int).clip(0, w - 1)
        return points[~self.blocked[rows, cols]]


@dataclass
class ScanReport:
    """What was found in a dataset folder and what could not be used, by name."""

    root: Path
    used: int = 0
    unlabelled: list[str] = field(default_factory=list)  # image without a label file
    orphan_labels: list[str] = field(default_factory=list)  # label file without an image
    failures: list[str] = field(default_factory=list)  # one line per unreadable image / bad label
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> names (by choice)
    duplicate_points: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        def names(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f", ... (+{len(items) - 5} more)" if len(items) > 5 else "")

        out = [f"{self.root}: {self.used} image(s) usable"]
        if self.unlabelled:
            out.append(f"  {len(self.unlabelled)} image(s) without a label file, not used: {names(self.unlabelled)}")
        if self.orphan_labels:
            out.append(f"  {len(self.orphan_labels)} label file(s) without an image: {names(self.orphan_labels)}")
        for reason, items in self.skipped.items():
            out.append(f"  {len(items)} image(s) skipped ({reason}): {names(items)}")
        if self.duplicate_points:
            out.append(f"  {len(self.duplicate_points)} label file(s) with duplicate points (kept once): "
                       f"{names(self.duplicate_points)}")
        if self.failures:
            out.append(f"  {len(self.failures)} file(s) failed:")
            out += [f"    {line}" for line in self.failures]
        return out


def scan(root: str | os.PathLike) -> tuple[list[tuple[Path, Path]], ScanReport]:
    """Pair ``images/*`` with ``labels/<stem>.txt``; returns the pairs and a report of the rest."""
    root = Path(root)
    image_dir, label_dir = root / "images", root / "labels"
    if not root.exists():
        raise DatasetError(f"{root}: does not exist")
    if not image_dir.is_dir():
        raise DatasetError(f"{root}: no images/ folder (expected {image_dir})")
    report = ScanReport(root)
    images = find_images(image_dir)
    labels = {p.stem: p for p in label_dir.glob("*.txt")} if label_dir.is_dir() else {}
    pairs = []
    for image in images:
        label = labels.pop(image.stem, None)
        if label is None:
            report.unlabelled.append(image.name)
        else:
            pairs.append((image, label))
    report.orphan_labels = sorted(p.name for p in labels.values())
    return pairs, report


def load_dataset(root: str | os.PathLike, max_targets: int | None = None, min_targets: int = 0,
                 progress: bool = True) -> tuple[list[Sample], ScanReport]:
    """Load every usable (image, label) pair of a dataset folder into memory.

    ``max_targets``/``min_targets`` keep only images with that many points (the regression method
    uses 1..1); what they skip is counted in the report.
    """
    pairs, report = scan(root)
    samples = []
    for image_path, label_path in tqdm(pairs, desc=f"reading {Path(root).name}", disable=not progress, leave=False):
        try:
            labels = read_labels(label_path)
            image = load_gray(image_path)
        except (LabelError, ImageError) as e:
            report.failures.append(str(e))
            continue
        xy = labels[:, :2]
        unique = np.unique(np.round(xy, 6), axis=0)
        if len(unique) < len(xy):
            report.duplicate_points.append(label_path.name)
            xy = unique
        n = len(xy)
        if n < min_targets or (max_targets is not None and n > max_targets):
            reason = f"{n} targets; this method needs {min_targets}..{max_targets}"
            report.skipped.setdefault(reason, []).append(image_path.name)
            continue
        h, w = image.shape
        points = normalised_to_pixel(xy, w, h)
        mask_path = Path(root) / "masks" / (image_path.stem + ".png")
        spreads = object_spreads(mask_path, image_path, points) if mask_path.is_file() else None
        samples.append(Sample(image_path.name, image, points, source=str(root), spreads=spreads))
    report.used = len(samples)
    return samples, report


def object_spreads(mask_path: Path, image_path: Path, points: np.ndarray, within: float = 1.0) -> np.ndarray | None:
    """The spread (N, 3) of each point's mask component: the component whose intensity-weighted
    centroid (the label definition, :func:`simple_keypoint.convert.mask_moments`) lies within
    ``within`` px of the point; zeros for a point with none. None if the mask cannot be used (the
    points then train with the fixed radius: a bad mask must not stop training)."""
    try:
        centroids, _, spreads = mask_moments(read_image(mask_path), to_gray(read_image(image_path)))
    except (ImageError, ValueError):
        return None
    out = np.zeros((len(points), 3))
    if len(centroids) and len(points):
        distance = np.linalg.norm(points[:, None, :2] - centroids[None], axis=2)
        nearest = distance.argmin(axis=1)
        close = distance[np.arange(len(points)), nearest] <= within
        out[close] = spreads[nearest[close]]
    return out


def split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Carve a deterministic validation split: returns (train, val)."""
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = int(round(len(samples) * fraction)) if fraction > 0 else 0
    n_val = min(max(n_val, 1 if fraction > 0 and len(samples) > 1 else 0), len(samples) - 1)
    val_index = set(order[:n_val].tolist())
    return ([s for i, s in enumerate(samples) if i not in val_index],
            [s for i, s in enumerate(samples) if i in val_index])


def random_crop(image: np.ndarray, points: np.ndarray, size: int, rng: np.random.Generator,
                target_fraction: float, keep_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop (zero-padded when the image is smaller) and the points inside it.

    ``points`` is (N, 2) ``u, v`` or (N, 5) with each object's spread (moved along unchanged).

    With probability ``target_fraction`` (always when ``keep_one``) the crop is placed so that a
    random labelled point lies inside it; otherwise anywhere. Points outside the crop are dropped.
    """
    h, w = image.shape
    if len(points) and (keep_one or rng.random() < target_fraction):
        u, v = points[rng.integers(len(points))][:2]
        # Any offset that keeps the point at least 2 px from the crop edge.
        x0 = rng.uniform(u + 2.5 - size, u - 1.5)
        y0 = rng.uniform(v + 2.5 - size, v - 1.5)
    else:
        x0 = rng.uniform(min(0, w - size), max(0, w - size))
        y0 = rng.uniform(min(0, h - size), max(0, h - size))
    x0, y0 = int(np.floor(x0)), int(np.floor(y0))
    crop = np.zeros((size, size), np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    moved = np.array(points, dtype=np.float64)
    moved = moved.reshape(-1, moved.shape[1] if moved.ndim == 2 else 2)
    moved[:, :2] -= (x0, y0)
    inside = np.all((moved[:, :2] >= -0.5) & (moved[:, :2] < size - 0.5), axis=1) if len(moved) else np.zeros(0, bool)
    return crop, moved[inside]


def flip_and_transpose(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random one of the 8 flips/rotations of a square crop, points (and spreads) moved exactly."""
    size = image.shape[0]
    points = points.copy()
    spread = points.shape[1] == 5  # u, v, var_u, var_v, cov_uv: a flip negates the covariance
    if rng.random() < 0.5:
        image, points[:, 0] = image[:, ::-1], size - 1 - points[:, 0]
        if spread:
            points[:, 4] *= -1
    if rng.random() < 0.5:
        image, points[:, 1] = image[::-1, :], size - 1 - points[:, 1]
        if spread:
            points[:, 4] *= -1
    if rng.random() < 0.5:
        image, points[:, [0, 1]] = image.T, points[:, [1, 0]]
        if spread:
            points[:, [2, 3]] = points[:, [3, 2]]
    return np.ascontiguousarray(image), np.ascontiguousarray(points)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random contrast, brightness and sensor noise on a standardised image."""
    image = image * rng.uniform(0.7, 1.4) + rng.uniform(-0.3, 0.3)
    noise = rng.uniform(0.0, 0.15)
    if noise > 0:
        image = image + rng.standard_normal(image.shape).astype(np.float32) * noise
    return image.astype(np.float32)


class CropDataset(torch.utils.data.Dataset):
    """Training crops: item i of epoch e is the same for the same seed (deterministic).

    Returns (image (1, S, S) float32, points (max_points, 2) float32 padded, count int); with
    ``spreads`` the points are (max_points, 5): ``u, v`` and the object's covariance (see :class:`Sample`).
    """

    def __init__(self, samples: list[Sample], crop_size: int, seed: int = 0, augment: bool = True,
                 target_fraction: float = 0.8, keep_one: bool = False, max_points: int = 16, spreads: bool = False):
        self.samples, self.crop_size, self.seed, self.augment = samples, crop_size, seed, augment
        self.target_fraction, self.keep_one, self.max_points, self.spreads = target_fraction, keep_one, max_points, spreads
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        sample = self.samples[i]
        image, points = random_crop(sample.image, sample.points_with_spreads() if self.spreads else sample.points,
                                    self.crop_size, rng, self.target_fraction, self.keep_one)
        return as_item(image, points, rng, self.augment, self.max_points)


def as_item(image: np.ndarray, points: np.ndarray, rng: np.random.Generator, augment: bool,
            max_points: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A crop and its points, augmented if asked, as a training item (image, padded points, count)."""
    if augment:
        image, points = flip_and_transpose(image, points, rng)
        image = photometric(image, rng)
    padded = np.zeros((max_points, points.shape[1]), np.float32)
    count = min(len(points), max_points)
    padded[:count] = points[:count]
    return torch.from_numpy(image)[None], torch.from_numpy(padded), count


@dataclass
class Patch:
    """A real target cut out of its frame: its contrast over the local background, soft-edged."""

    delta: np.ndarray  # h x w float32, in the standardised units of its frame
    centre: np.ndarray  # (2,) the target's point (u, v) inside the patch
    spread: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (var_u, var_v, cov_uv) px^2, as Sample's


def cut_patches(samples: list[Sample], margin: int = 3, max_side: int = 24) -> list[Patch]:
    """Every target of ``samples`` whose dataset folder has ``masks/<stem>.png``, as a :class:`Patch`:
    the image minus the median of a ring around the mask, faded out one pixel beyond it. The point
    is the patch's intensity-weighted centroid (the mask-centroid label definition, on the contrast)."""
    patches = []
    grow = np.ones((3, 3), np.uint8)
    for sample in samples:
        mask_path = Path(sample.source) / "masks" / (Path(sample.name).stem + ".png")
        try:
            mask = to_gray(read_image(mask_path)) if mask_path.is_file() else None
        except ImageError:  # a bad mask only means no patch from that image
            mask = None
        if mask is None or mask.shape != sample.image.shape:
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
        h, w = mask.shape
        for i in range(1, n):
            x, y, bw, bh, _ = stats[i]
            if max(bw, bh) > max_side:
                continue
            x0, y0, x1, y1 = max(x - margin, 0), max(y - margin, 0), min(x + bw + margin, w), min(y + bh + margin, h)
            inside = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
            near = cv2.dilate(inside, grow)
            ring = near == 0
            if ring.sum() < 4:
                continue
            region = sample.image[y0:y1, x0:x1]
            delta = (region - np.median(region[ring])) * cv2.GaussianBlur(near.astype(np.float32), (3, 3), 0)
            weight = np.where(inside > 0, np.clip(delta, 0, None) + 1e-6, 0.0)
            vv, uu = np.mgrid[0:y1 - y0, 0:x1 - x0]
            total = weight.sum()
            centre = np.array([(uu * weight).sum(), (vv * weight).sum()]) / total
            du, dv = uu - centre[0], vv - centre[1]
            spread = np.array([(du * du * weight).sum(), (dv * dv * weight).sum(), (du * dv * weight).sum()]) / total
            patches.append(Patch(delta.astype(np.float32), centre, spread))
    return patches


def paste(image: np.ndarray, points: np.ndarray, patch: Patch, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with ``patch`` added at a random place (flipped at random, contrast x 0.5-1.5), and
    ``points`` (N, 2), or (N, 5) with spreads, with its point added; unchanged if the patch does not fit."""
    delta, centre, spread = patch.delta, patch.centre.copy(), patch.spread.copy()
    ph, pw = delta.shape
    if rng.random() < 0.5:
        delta, centre[0], spread[2] = delta[:, ::-1], pw - 1 - centre[0], -spread[2]
    if rng.random() < 0.5:
        delta, centre[1], spread[2] = delta[::-1], ph - 1 - centre[1], -spread[2]
    h, w = image.shape
    if ph + 8 > h or pw + 8 > w:
        return image, points
    y0, x0 = int(rng.integers(4, h - ph - 3)), int(rng.integers(4, w - pw - 3))
    image = image.copy()
    image[y0:y0 + ph, x0:x0 + pw] += delta * np.float32(rng.uniform(0.5, 1.5))
    columns = points.shape[1] if points.ndim == 2 else 2
    new = np.concatenate([centre + (x0, y0), spread])[:columns]
    return image, np.vstack([points.reshape(-1, columns), new])


def composite_patch(parts: list[Patch], rng: np.random.Generator, radius: float) -> Patch:
    """One object made of several hot spots (an aircraft's engines and wing tips, seen close):
    ``parts`` placed at random within ``radius`` px of a common centre and summed. Its point is the
    intensity-weighted centroid of the whole and its spread the whole's second moments, like a mask
    covering all of it (the label a labeller gives such an object: one point, at its centre)."""
    offsets = rng.uniform(-radius, radius, (len(parts), 2))
    corners = np.floor(offsets - [np.array(p.delta.shape[::-1]) / 2 for p in parts]).astype(int)
    lo = corners.min(axis=0)
    hi = np.max([c + p.delta.shape[::-1] for c, p in zip(corners, parts, strict=True)], axis=0)
    canvas = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.float32)
    for (x, y), part in zip(corners - lo, parts, strict=True):
        h, w = part.delta.shape
        canvas[y:y + h, x:x + w] += part.delta
    weight = np.clip(canvas, 0, None) + 1e-6
    vv, uu = np.mgrid[0:canvas.shape[0], 0:canvas.shape[1]]
    total = weight.sum()
    centre = np.array([(uu * weight).sum(), (vv * weight).sum()]) / total
    du, dv = uu - centre[0], vv - centre[1]
    spread = np.array([(du * du * weight).sum(), (dv * dv * weight).sum(), (du * dv * weight).sum()]) / total
    return Patch(canvas, centre, spread)


def load_clutter(root: str | os.PathLike, margin: int = 8, progress: bool = True) -> tuple[list[Sample], ScanReport]:
    """Target-free frames for negatives: ``root/images/``, and where ``root/annotations.json`` holds
    boxes of other objects (HIT-UAV's layout: ``images[].filename``, ``annotation[].bbox`` x, y, w, h),
    those boxes grown by ``margin`` are blocked. Raises DatasetError for a missing folder or a bad file."""
    import json

    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: does not exist")
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: no images/ folder (expected {root / 'images'})")
    boxes: dict[str, list] = {}
    annotations = root / "annotations.json"
    if annotations.is_file():
        try:
            data = json.loads(annotations.read_text(encoding="utf-8"))
            names = {im["id"]: im["filename"] for im in data["images"]}
            for a in data["annotation"]:
                boxes.setdefault(names[a["image_id"]], []).append([float(v) for v in a["bbox"]])
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{annotations}: not a HIT-UAV-style annotation file ({type(e).__name__}: {e})") from None
    report = ScanReport(root)
    samples = []
    for path in tqdm(find_images(root / "images"), desc=f"reading {root.name}", disable=not progress, leave=False):
        try:
            image = load_gray(path)
        except ImageError as e:
            report.failures.append(str(e))
            continue
        blocked = np.zeros(image.shape, bool)
        for x, y, w, h in boxes.get(path.name, []):
            blocked[max(int(y) - margin, 0):int(np.ceil(y + h)) + margin, max(int(x) - margin, 0):int(np.ceil(x + w)) + margin] = True
        samples.append(Sample(path.name, image, np.zeros((0, 2)), blocked, str(root)))
    report.used = len(samples)
    return samples, report


class MixedCropDataset(torch.utils.data.Dataset):
    """Training crops from several datasets, each drawing its ``share`` of the crops, plus crops of
    target-free clutter frames: with probability ``paste_prob`` real target patches are pasted in (a
    target on ground clutter, with an exact point), and a ``hard_share`` of them are centred on
    the current model's strongest false alarms (``hard``, refreshed by training after each epoch).

    Item i of epoch e is the same for the same seed, like :class:`CropDataset`'s.
    """

    def __init__(self, sources: list[list[Sample]], shares: list[float], length: int, crop_size: int, seed: int = 0,
                 target_fraction: float = 0.8, keep_one: bool = False, clutter: list[Sample] | None = None,
                 clutter_share: float = 0.0, patches: list[Patch] | None = None, paste_prob: float = 0.0,
                 hard_share: float = 0.0, max_points: int = 16, spreads: bool = False, composite: float = 0.0,
                 clutter_zoom: float = 1.0):
        self.clutter = clutter or []
        # Clutter crops (not the mined ones) are enlarged by up to this factor: ground seen from closer
        # than the clutter frames' altitude shows larger edges and hot patches; pasted targets stay small.
        self.clutter_zoom = clutter_zoom
        self.spreads = spreads  # points carry each object's spread (see CropDataset)
        # Share of pasted objects made of 2-4 small hot spots with one point (see composite_patch).
        self.composite = composite
        self._spots = [p for p in (patches or []) if max(p.delta.shape) <= 10]
        weights = np.array([*(s if len(src) else 0.0 for s, src in zip(shares, sources, strict=True)),
                            clutter_share if self.clutter else 0.0], np.float64)
        if not weights.sum() > 0:
            raise ValueError("no crops to draw: every source is empty or has a zero share")
        self.sources, self.shares, self.length, self.crop_size, self.seed = sources, weights / weights.sum(), length, crop_size, seed
        self.target_fraction, self.keep_one, self.max_points = target_fraction, keep_one, max_points
        self.patches, self.paste_prob, self.hard_share = patches or [], paste_prob, hard_share
        self.hard: list[tuple[int, float, float]] = []  # (clutter index, u, v) of mined false alarms
        self.epoch = 0
        # Summed-area tables of the blocked pixels: a crop is clean if its sum is 0.
        self._blocked_sums = [None if c.blocked is None else cv2.integral(c.blocked.astype(np.uint8)) for c in self.clutter]

    def __len__(self) -> int:
        return self.length

    def _clutter_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A crop of a clutter frame that covers no blocked pixel (a few tries, else a blank crop)."""
        size = self.crop_size
        for _ in range(20):
            hard = bool(self.hard) and rng.random() < self.hard_share
            zoom = 1.0 if hard or self.clutter_zoom <= 1 else float(np.exp(rng.uniform(0.0, np.log(self.clutter_zoom))))
            region = max(int(round(size / zoom)), 8)
            k, u, v = self.hard[rng.integers(len(self.hard))] if hard else (int(rng.integers(len(self.clutter))), 0.0, 0.0)
            frame = self.clutter[k].image
            h, w = frame.shape
            if hard:  # the false alarm anywhere but within 8 px of the crop's edge
                x0 = int(np.clip(np.floor(rng.uniform(u + 8 - size, u - 8)), 0, max(w - size, 0)))
                y0 = int(np.clip(np.floor(rng.uniform(v + 8 - size, v - 8)), 0, max(h - size, 0)))
            else:
                x0, y0 = int(rng.integers(0, max(w - region, 0) + 1)), int(rng.integers(0, max(h - region, 0) + 1))
            sums = self._blocked_sums[k]
            x1, y1 = min(x0 + region, w), min(y0 + region, h)
            if sums is not None and sums[y1, x1] - sums[y0, x1] - sums[y1, x0] + sums[y0, x0] > 0:
                continue
            crop = np.zeros((region, region), np.float32)
            crop[:y1 - y0, :x1 - x0] = frame[y0:y1, x0:x1]
            return crop if region == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        return np.zeros((size, size), np.float32)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        which = int(rng.choice(len(self.shares), p=self.shares))
        if which == len(self.sources):
            image, points = self._clutter_crop(rng), np.zeros((0, 5 if self.spreads else 2))
            if self.patches and rng.random() < self.paste_prob:
                for _ in range(int(rng.integers(1, 3))):
                    if self._spots and rng.random() < self.composite:
                        parts = [self._spots[j] for j in rng.integers(len(self._spots), size=int(rng.integers(2, 5)))]
                        patch = composite_patch(parts, rng, radius=float(rng.uniform(2.0, 6.0)))
                    else:
                        patch = self.patches[rng.integers(len(self.patches))]
                    image, points = paste(image, points, patch, rng)
        else:
            samples = self.sources[which]
            sample = samples[rng.integers(len(samples))]
            image, points = random_crop(sample.image, sample.points_with_spreads() if self.spreads else sample.points,
                                        self.crop_size, rng, self.target_fraction, self.keep_one)
        return as_item(image, points, rng, True, self.max_points)


def resized_up(samples: list[Sample], factor: int = 2) -> list[Sample]:
    """Each frame resized up ``factor`` times (bilinear; its blocked pixels nearest) and standardised
    again, its points moved with it: ground seen from closer, as large frames show it."""
    out = []
    for s in samples:
        h, w = s.image.shape
        image = standardise(cv2.resize(s.image, (w * factor, h * factor), interpolation=cv2.INTER_LINEAR))
        blocked = None if s.blocked is None else cv2.resize(s.blocked.astype(np.uint8), (w * factor, h * factor),
                                                            interpolation=cv2.INTER_NEAREST) > 0
        # Pixel centres scale as (u + 0.5) * factor - 0.5.
        out.append(Sample(f"{s.name} x{factor}", image, s.points * factor + (factor - 1) / 2, blocked, s.source))
    return out
