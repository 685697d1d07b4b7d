"""The annotation state, with no GUI: images, points, selection, undo, snapping, files.

The Tk window (``app.py``) only turns mouse and key events into calls on :class:`Session` and
draws what it holds, so everything that decides what ends up in a label file is tested here
without a display.

States of an image: *unlabelled* (no label file), *no target* (file holding ``0``) or labelled
(N points). Every edit is saved at once, atomically, through :mod:`simple_keypoint.labels`; an
edit that cannot be saved stays in memory, is reported, and is retried on the next edit, on
navigation and on quit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmark_annotation.snap import snap_point
from simple_keypoint.images import ImageError, find_images, read_image, to_gray
from simple_keypoint.labels import LabelError, normalised_to_pixel, pixel_to_normalised, read_labels, write_labels

Points = tuple[tuple[float, float], ...]
# A proposer turns the raw image into proposed points (N, >=2) in pixel coordinates (u, v, ...).
Proposer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class State:
    """What one image's label file says: ``labelled=False`` means no file at all."""

    points: Points = ()
    labelled: bool = False


UNLABELLED = State()


class Session:
    """One annotation session over a folder of images."""

    def __init__(self, images_dir: str | os.PathLike, labels_dir: str | os.PathLike | None = None,
                 proposer: Proposer | None = None, carry: bool = False, snap: bool = True, snap_radius: int = 3):
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"{self.images_dir}: not a folder")
        self.labels_dir = Path(labels_dir) if labels_dir is not None else self.images_dir.parent / "labels"
        self.images = find_images(self.images_dir)
        self.proposer, self.carry = proposer, carry
        self.snap, self.snap_radius = snap, snap_radius
        self.index = -1
        self.raw: np.ndarray | None = None  # the image as stored (for pixel values)
        self.gray: np.ndarray | None = None  # raw scale, one channel (snapping, display)
        self.state = UNLABELLED
        self.proposals: np.ndarray = np.zeros((0, 2))
        self.selected: int | None = None
        self.undo_stack: list[State] = []
        self.redo_stack: list[State] = []
        self.message = ""  # last thing worth telling the user (errors included)
        self.error = ""  # the current image's problem (unreadable image, malformed label file)
        self.bad_images: dict[str, str] = {}  # name -> reason, for images that failed to load
        # image index -> (state, image size) not yet on disk because saving failed; retried on every save
        self.unsaved: dict[int, tuple[State, tuple[int, int]]] = {}
        self.malformed: dict[int, str] = {}  # image index -> LabelError text, until replaced
        self._drag_from: State | None = None
        self._disk_state = UNLABELLED
        self._carried = np.zeros((0, 2))
        self.labelled: set[int] = set()  # images with a valid label file
        for i in range(len(self.images)):
            if self.label_path(i).is_file():
                try:
                    read_labels(self.label_path(i))
                    self.labelled.add(i)
                except LabelError as e:  # counted as unlabelled, so "next unlabelled" visits it
                    self.malformed[i] = str(e)
        if self.malformed:
            first = next(iter(self.malformed.values()))
            self.message = f"{len(self.malformed)} malformed label file(s), e.g. {first}"

    # ---- files -------------------------------------------------------------------------------
    def label_path(self, index: int | None = None) -> Path:
        return self.labels_dir / f"{self.images[self.index if index is None else index].stem}.txt"

    @property
    def name(self) -> str:
        return self.images[self.index].name if 0 <= self.index < len(self.images) else ""

    @property
    def size(self) -> tuple[int, int]:
        """Width, height of the current image."""
        assert self.gray is not None
        return self.gray.shape[1], self.gray.shape[0]

    def _read_state(self, index: int) -> State:
        """The state on disk; a malformed file is reported, remembered and shown as unlabelled."""
        path = self.label_path(index)
        if not path.is_file():
            return UNLABELLED
        try:
            xy = read_labels(path)[:, :2]
        except LabelError as e:
            self.malformed[index] = str(e)
            self.labelled.discard(index)
            return UNLABELLED
        self.malformed.pop(index, None)
        w, h = self.size
        return State(tuple((float(u), float(v)) for u, v in normalised_to_pixel(xy, w, h)), True)

    def _write(self, index: int, state: State, size: tuple[int, int]) -> str:
        """Put ``state`` on disk (raises OSError). A malformed file is moved aside, never lost.
        Returns a note for the user ("" when there is nothing to add)."""
        path = self.label_path(index)
        self.labels_dir.mkdir(parents=True, exist_ok=True)
        note = ""
        if index in self.malformed and path.is_file():
            backup, n = path.with_name(path.name + ".bad"), 1
            while backup.exists():
                backup, n = path.with_name(f"{path.name}.bad{n}"), n + 1
            os.replace(path, backup)
            note = f"replaced malformed {path.name} (original kept as {backup.name}); "
            if index == self.index:
                self.error = ""
        self.malformed.pop(index, None)
        if state.labelled:
            uv = np.array(state.points, dtype=np.float64).reshape(-1, 2)
            # Points are kept inside the image so the file is always valid ([0, 1]).
            write_labels(path, np.clip(pixel_to_normalised(uv, *size), 0.0, 1.0))
            self.labelled.add(index)
        else:
            path.unlink(missing_ok=True)
            self.labelled.discard(index)
        return note

    def save(self) -> bool:
        """Write the current image's state if it differs from disk, and retry every edit that could
        not be saved before. False (with ``message`` naming the file and reason) if any failed."""
        if self.gray is not None and self.state != self._disk_state:
            self.unsaved[self.index] = (self.state, self.size)
        notes, failed = [], []
        for index, (state, size) in sorted(self.unsaved.items()):
            try:
                notes.append(self._write(index, state, size) + f"saved {self.label_path(index).name}")
            except OSError as e:
                failed.append(f"NOT SAVED {self.label_path(index)}: {e.strerror or e}")
                continue
            del self.unsaved[index]
            if index == self.index:
                self._disk_state = state
        if failed or notes:
            self.message = "; ".join(failed + notes)
        return not failed

    # ---- navigation ----------------------------------------------------------------------------
    def open(self, index: int) -> bool:
        """Load image ``index``. False (with ``error`` set) if it cannot be read."""
        self.index = index
        self.selected, self.undo_stack, self.redo_stack, self._drag_from = None, [], [], None
        self.proposals = np.zeros((0, 2))
        self.error = ""
        try:
            self.raw = read_image(self.images[index])
            self.gray = to_gray(self.raw)
        except (ImageError, ValueError) as e:
            self.raw = self.gray = None
            self.state = self._disk_state = UNLABELLED
            self.error = str(e) if isinstance(e, ImageError) else f"{self.images[index]}: {e}"
            self.bad_images[self.images[index].name] = self.error
            return False
        self.state = self._disk_state = self._read_state(index)
        if index in self.malformed:
            self.error = f"malformed label file {self.malformed[index]} (moved aside to .bad if you edit)"
        if index in self.unsaved:  # an edit that could not be saved before: keep showing it, retry
            self.state = self.unsaved[index][0]
            self.save()
        if not self.state.labelled:
            self._propose()
        return True

    def _propose(self) -> None:
        proposals = []
        if self.proposer is not None:
            try:
                found = np.asarray(self.proposer(self.raw), dtype=np.float64)
                proposals = found[:, :2] if found.ndim == 2 else found.reshape(-1, 2)
            except Exception as e:  # a model failure must not stop labelling
                self.message = f"model failed on {self.name}: {e}"
        elif self.carry and len(self._carried):
            proposals = self._carried
        self.proposals = np.array(proposals, dtype=np.float64).reshape(-1, 2)

    def go(self, index: int, step: int = 1) -> bool:
        """Open image ``index``; an unreadable one is reported and skipped in direction ``step``.

        Returns False when no readable image was found that way (the current one stays open).
        """
        if not self.images:
            return False
        self.save()
        if self.state.labelled and self.state.points:
            self._carried = np.array(self.state.points)
        previous, skipped = self.index, []
        while 0 <= index < len(self.images):
            if self.open(index):
                if skipped:
                    self.message = "skipped unreadable: " + "; ".join(skipped)
                return True
            skipped.append(self.error)
            index += step or 1
        self.message = "skipped unreadable: " + "; ".join(skipped) if skipped else "no more images that way"
        if 0 <= previous < len(self.images) and previous != self.index:
            self.open(previous)
        return False

    def next(self) -> bool:
        return self.go(self.index + 1, 1)

    def previous(self) -> bool:
        return self.go(self.index - 1, -1)

    def first_unlabelled_from(self, start: int) -> int | None:
        """The first image at or after ``start`` (wrapping) with no label file and not known bad."""
        n = len(self.images)
        for k in range(n):
            i = (start + k) % n
            if i not in self.labelled and self.images[i].name not in self.bad_images:
                return i
        return None

    def next_unlabelled(self) -> bool:
        target = self.first_unlabelled_from(self.index + 1)
        if target is None:
            self.message = "every image is labelled"
            return False
        return self.go(target, 1)

    def start(self) -> bool:
        """Open the first unlabelled image (or the first image when all are labelled)."""
        target = self.first_unlabelled_from(0)
        return self.go(0 if target is None else target, 1)

    # ---- editing -------------------------------------------------------------------------------
    @property
    def editable(self) -> bool:
        return self.gray is not None

    def _commit(self, state: State) -> None:
        """Every edit goes through here: undo entry, then autosave."""
        if state == self.state:
            return
        self.undo_stack.append(self.state)
        self.redo_stack.clear()
        self.state = state
        self.proposals = np.zeros((0, 2))
        self.save()

    def snapped(self, u: float, v: float) -> tuple[float, float]:
        """Where a click at (u, v) lands: the local peak's centroid when snapping is on."""
        assert self.gray is not None
        w, h = self.size
        if self.snap:
            point = snap_point(self.gray, u, v, self.snap_radius)
            if point is not None:
                return point
        return min(max(u, -0.5), w - 0.5), min(max(v, -0.5), h - 0.5)

    def add(self, u: float, v: float) -> int | None:
        """Add a point at a click (snapped); returns its index. Proposals on show are replaced."""
        if not self.editable:
            return None
        point = self.snapped(u, v)
        self._commit(State((*self.state.points, point), True))
        self.selected = len(self.state.points) - 1
        return self.selected

    def nearest(self, u: float, v: float, max_distance: float) -> int | None:
        """Index of the point closest to (u, v) within ``max_distance`` pixels, or None."""
        if not self.state.points:
            return None
        d = np.hypot(*(np.array(self.state.points) - (u, v)).T)
        i = int(np.argmin(d))
        return i if d[i] <= max_distance else None

    def delete(self, index: int | None = None) -> None:
        """Remove a point (default: the selected one). Removing the last one leaves "no target"."""
        index = self.selected if index is None else index
        if index is None or not (0 <= index < len(self.state.points)):
            return
        points = self.state.points[:index] + self.state.points[index + 1:]
        self._commit(State(points, True))
        self.selected = None

    def move(self, index: int, u: float, v: float, final: bool = True) -> None:
        """Move a point to (u, v). ``final=False`` is a live drag step: one undo entry and one save
        are made on the final call (snapped when snapping is on)."""
        if not (0 <= index < len(self.state.points)):
            return
        if self._drag_from is None:
            self._drag_from = self.state
        w, h = self.size
        point = self.snapped(u, v) if final else (min(max(u, -0.5), w - 0.5), min(max(v, -0.5), h - 0.5))
        points = list(self.state.points)
        points[index] = point
        self.selected = index
        if not final:
            self.state = State(tuple(points), True)
            return
        before, self._drag_from = self._drag_from, None
        self.state = before
        self._commit(State(tuple(points), True))

    def nudge(self, du: float, dv: float) -> None:
        """Move the selected point by (du, dv) pixels exactly (no snapping)."""
        if self.selected is None or not (0 <= self.selected < len(self.state.points)):
            return
        w, h = self.size
        u, v = self.state.points[self.selected]
        points = list(self.state.points)
        points[self.selected] = (min(max(u + du, -0.5), w - 0.5), min(max(v + dv, -0.5), h - 0.5))
        self._commit(State(tuple(points), True))

    def no_target(self) -> None:
        """Mark the image as looked at with no target (writes ``0``)."""
        if self.editable:
            self._commit(State((), True))
            self.selected = None

    def accept_proposals(self) -> bool:
        if not self.editable or (not len(self.proposals) and self.proposer is None):
            return False
        w, h = self.size
        points = tuple((min(max(float(u), -0.5), w - 0.5), min(max(float(v), -0.5), h - 0.5)) for u, v in self.proposals)
        self._commit(State(points, True))
        return True

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.state)
        self.state = self.undo_stack.pop()
        self.selected = None
        self.save()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.state)
        self.state = self.redo_stack.pop()
        self.selected = None
        self.save()
        return True

    # ---- status --------------------------------------------------------------------------------
    def status(self) -> str:
        if self.error and self.gray is None:
            return "unreadable image"
        if self.index in self.unsaved:
            return "NOT SAVED"
        if not self.state.labelled:
            return "unlabelled"
        n = len(self.state.points)
        return "no target" if not n else f"labelled, {n} point{'s' if n > 1 else ''}"

    def pixel_value(self, u: float, v: float) -> str:
        """The raw value(s) under pixel (u, v), as stored (all channels of a colour image)."""
        if self.raw is None:
            return ""
        iu, iv = int(round(u)), int(round(v))
        h, w = self.raw.shape[:2]
        if not (0 <= iu < w and 0 <= iv < h):
            return ""
        value = self.raw[iv, iu]
        return " ".join(f"{x:g}" for x in np.ravel(value))

    def quit(self) -> bool:
        """Save what is pending; False if some edit could not be written (the caller must ask)."""
        self.save()
        return not self.unsaved
