"""Open and save labelme JSON and COCO keypoints for a session's folder, through the project's
converter (:mod:`simple_keypoint.convert`); no Tk.

Opening fills only images that have no label file yet (a label never gets overwritten by an
import); saving writes every labelled image but never replaces an existing file unless told to
(``overwrite``). Each problem (a bad JSON file, an unreadable image, a size that does not match)
is one line naming the file, and the rest goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmark_annotation.session import Session
from simple_keypoint.convert import ConvertError, read_coco_keypoints, read_labelme, write_coco_keypoints, write_labelme
from simple_keypoint.images import ImageError, read_image
from simple_keypoint.labels import LabelError, read_labels, write_labels


@dataclass
class Report:
    """What an import or export did: counts and one line per problem."""

    done: int = 0
    kept: int = 0  # images that already had a label file (imports never overwrite)
    problems: list[str] = field(default_factory=list)

    def summary(self, verb: str) -> str:
        text = f"{verb} {self.done} image(s)"
        if self.kept:
            text += f", kept {self.kept} existing label file(s)"
        if self.problems:
            text += f"; {len(self.problems)} problem(s): " + "; ".join(self.problems)
        return text


def _size(path: Path) -> tuple[int, int]:
    image = read_image(path)
    return image.shape[1], image.shape[0]


def _fill(session: Session, found: dict[str, tuple[np.ndarray, tuple[int, int] | None]], source: str) -> Report:
    """Write imported normalised points for the session's images that have no label file yet."""
    report = Report()
    by_name = {p.name: i for i, p in enumerate(session.images)}
    by_stem = {p.stem: i for i, p in enumerate(session.images)}
    for key, (points, size) in found.items():
        index = by_name.get(key, by_stem.get(Path(key).stem))
        if index is None:
            report.problems.append(f"{source}: {key} is not in {session.images_dir}")
            continue
        path = session.label_path(index)
        if path.exists():
            report.kept += 1
            continue
        try:
            if size is not None and size != _size(session.images[index]):
                report.problems.append(f"{key}: size {size[0]}x{size[1]} in {source} but the image is "
                                       f"{'x'.join(map(str, _size(session.images[index])))}")
                continue
            session.labels_dir.mkdir(parents=True, exist_ok=True)
            write_labels(path, points)
        except (ImageError, OSError) as e:
            report.problems.append(str(e) if isinstance(e, ImageError) else f"{path}: {e.strerror or e}")
            continue
        session.labelled.add(index)
        report.done += 1
    return report


def open_labelme(session: Session, folder: str | os.PathLike) -> Report:
    """Labels from ``folder/<image stem>.json`` (labelme point shapes) for unlabelled images."""
    found: dict[str, tuple[np.ndarray, tuple[int, int] | None]] = {}
    problems = []
    for json_path in sorted(Path(folder).glob("*.json")):
        try:
            points, size = read_labelme(json_path)
        except ConvertError as e:
            problems.append(str(e))
            continue
        found[json_path.stem] = (points, size)
    report = _fill(session, found, str(folder))
    report.problems[:0] = problems
    return report


def open_coco(session: Session, path: str | os.PathLike) -> Report:
    """Labels from a COCO keypoints file for unlabelled images (matched by file name)."""
    problems: list[str] = []
    try:
        found = read_coco_keypoints(path, problems)
    except ConvertError as e:
        return Report(problems=[str(e)])
    report = _fill(session, {name: (points, None) for name, points in found.items()}, str(path))
    report.problems[:0] = problems
    return report


def _labelled(session: Session, report: Report) -> list[tuple[Path, np.ndarray, tuple[int, int]]]:
    """(image, normalised points, size) of every image with a valid label file."""
    out = []
    for index in sorted(session.labelled):
        image = session.images[index]
        try:
            points = read_labels(session.label_path(index))[:, :2]
            out.append((image, points, _size(image)))
        except (LabelError, ImageError) as e:
            report.problems.append(str(e))
    return out


def existing_exports(session: Session, labelme_folder: str | os.PathLike | None,
                     coco_file: str | os.PathLike | None) -> list[Path]:
    """The files that saving to ``labelme_folder`` / ``coco_file`` (None: not saved) would replace:
    a labelme JSON for any of the session's images (any may be labelled by the end), the COCO file."""
    taken = []
    if labelme_folder is not None:
        taken += [path for image in session.images if (path := Path(labelme_folder) / f"{image.stem}.json").exists()]
    if coco_file is not None and Path(coco_file).exists():
        taken.append(Path(coco_file))
    return taken


def refusal(taken: list[Path], labelme_folder: str | os.PathLike | None, coco_file: str | os.PathLike | None) -> str:
    """The one line refusing to start because saving would replace the ``taken`` files."""
    if coco_file is not None and Path(coco_file) in taken:
        return f"--save-coco {coco_file} already exists (--overwrite replaces it)"
    return (f"--save-labelme {labelme_folder} already holds {len(taken)} of the labelme file(s) it would write, "
            f"e.g. {taken[0]} (--overwrite replaces them)")


def save_labelme(session: Session, folder: str | os.PathLike, overwrite: bool = False) -> Report:
    """One labelme JSON per labelled image in ``folder`` (imagePath relative to it); a file that
    exists is a problem and stays as it is unless ``overwrite``."""
    report = Report()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image, points, (width, height) in _labelled(session, report):
        path = folder / f"{image.stem}.json"
        if path.exists() and not overwrite:
            report.problems.append(f"{path}: exists, not replaced (--overwrite replaces it)")
            continue
        try:
            write_labelme(path, points, os.path.relpath(image, folder), width, height)
            report.done += 1
        except OSError as e:
            report.problems.append(f"{path}: {e.strerror or e}")
    return report


def save_coco(session: Session, path: str | os.PathLike, overwrite: bool = False) -> Report:
    """One COCO keypoints file of every labelled image ("no target" images listed without points); an
    existing file is a problem and stays as it is unless ``overwrite``."""
    if Path(path).exists() and not overwrite:
        return Report(problems=[f"{path}: exists, not replaced (--overwrite replaces it)"])
    report = Report()
    items = {image.name: (points, size) for image, points, size in _labelled(session, report)}
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_coco_keypoints(path, items)
        report.done = len(items)
    except OSError as e:
        report.problems.append(f"{path}: {e.strerror or e}")
    return report
