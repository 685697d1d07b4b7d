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

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmark_annotation.defaults import PROPOSAL_FLOOR, PROPOSAL_THRESHOLD  # noqa: F401  (re-exported)
from landmark_annotation.snap import snap_region
from simple_keypoint.images import ImageError, find_images, read_image, to_gray
from simple_keypoint.labels import LabelError, normalised_to_pixel, pixel_to_normalised, read_labels, write_labels

Points = tuple[tuple[float, float], ...]
# A proposer turns the raw image into proposed points (N, >=2) in pixel coordinates (u, v, ...).
Proposer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class State:
    """What one image's label file says: ``labelled=False`` means no file at all. ``uncertain``
    holds the indices of points flagged uncertain (kept in the file's optional flag column)."""

    points: Points = ()
    labelled: bool = False
    uncertain: frozenset[int] = frozenset()


# Review states of an image, as the file list shows them.
REVIEW_STATES = ("unlabelled", "labelled", "no target", "unreadable", "proposals pending", "uncertain")
# Proposal score threshold steps (keys , and .).
THRESHOLD_STEP = 0.05
# How far (pixels) around the predicted position a carried point searches in the next frame, and
# how close a model proposal must be to that prediction to be used instead.
TRACK_RADIUS = 4
TRACK_AGREE = 3.0
# A proposal snapped closer than this (pixels) to a better one is on the same target.
SAME_TARGET = 1.0


UNLABELLED = State()


def snap_proposals(gray: np.ndarray, proposals: np.ndarray, radius: int = 3) -> np.ndarray:
    """Each proposal (N, 3) ``u, v, score`` moved as a click there would be, best score first.
    Where nothing stands out it stays; one that would land on a better proposal's point stays
    where the model put it (a separate peak, for the labeller to judge), never a duplicate."""
    h, w = gray.shape
    out: list[tuple[float, float, float]] = []
    for u, v, score in proposals[np.argsort(-proposals[:, 2], kind="stable")]:
        found = snap_region(gray, u, v, radius).point
        own = (min(max(float(u), -0.5), w - 0.5), min(max(float(v), -0.5), h - 0.5))
        pu, pv = found if found is not None else own
        if any(np.hypot(pu - a, pv - b) <= SAME_TARGET for a, b, _ in out):
            pu, pv = own
        out.append((pu, pv, float(score)))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


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
        self.proposals: np.ndarray = np.zeros((0, 3))  # u, v, score (all of them; see shown_proposals)
        self.score_threshold = 0.0
        self.last_click: tuple[tuple[float, float], tuple[float, float]] | None = None  # click -> where it went
        self.history: dict[int, tuple[list[State], list[State]]] = {}  # per-image undo/redo, kept while running
        self.tracks: dict[int, Points] = {}  # image index -> points as last labelled (motion for carrying)
        self.pending: set[int] = set()  # images shown with proposals not accepted yet
        self.uncertain_images: set[int] = set()
        self.no_target_images: set[int] = set()  # label file holding 0 points
        self._disk_bytes: bytes | None = None  # the label file as last read or written (None: no file)
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
        self.labelled: set[int] = set()  # images with a valid label file
        for i in range(len(self.images)):
            if self.label_path(i).is_file():
                try:
                    points = read_labels(self.label_path(i), with_flags=True)
                    self.labelled.add(i)
                    if points[:, 3].any():
                        self.uncertain_images.add(i)
                    if not len(points):
                        self.no_target_images.add(i)
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
            self._disk_bytes = path.read_bytes()
            points = read_labels(path, with_flags=True)
        except (LabelError, OSError) as e:
            if isinstance(e, OSError):
                e = LabelError(path, None, f"cannot read: {e.strerror or e}")
            self.malformed[index] = str(e)
            self.labelled.discard(index)
            return UNLABELLED
        self.malformed.pop(index, None)
        w, h = self.size
        uv = normalised_to_pixel(points[:, :2], w, h)
        return State(tuple((float(u), float(v)) for u, v in uv), True,
                     frozenset(int(i) for i in np.flatnonzero(points[:, 3])))

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
        if index == self.index:
            note += self._keep_theirs(path)
        if state.labelled:
            uv = np.array(state.points, dtype=np.float64).reshape(-1, 2)
            # Points are kept inside the image so the file is always valid ([0, 1]).
            xy = np.clip(pixel_to_normalised(uv, *size), 0.0, 1.0)
            write_labels(path, xy, np.array([i in state.uncertain for i in range(len(uv))], dtype=bool))
            self.labelled.add(index)
            (self.uncertain_images.add if state.uncertain else self.uncertain_images.discard)(index)
            (self.no_target_images.discard if state.points else self.no_target_images.add)(index)
            written: bytes | None = path.read_bytes()
        else:
            path.unlink(missing_ok=True)
            self.labelled.discard(index)
            self.uncertain_images.discard(index)
            self.no_target_images.discard(index)
            written = None
            note += f"removed {path.name} (unlabelled); "
        if index == self.index:
            self._disk_bytes = written
        self.pending.discard(index)
        return note

    def _keep_theirs(self, path: Path) -> str:
        """Someone else (another copy of the tool, an editor) changed the file since it was read:
        move their version aside instead of overwriting it, and say so."""
        try:
            now: bytes | None = path.read_bytes()
        except FileNotFoundError:
            now = None
        if now == self._disk_bytes or now is None:
            return ""
        backup, n = path.with_name(path.name + ".theirs"), 1
        while backup.exists():
            backup, n = path.with_name(f"{path.name}.theirs{n}"), n + 1
        os.replace(path, backup)
        return f"CHANGED ON DISK: {path.name} was edited elsewhere since opened; theirs kept as {backup.name}; "

    def save(self) -> bool:
        """Write the current image's state if it differs from disk, and retry every edit that could
        not be saved before. False (with ``message`` naming the file and reason) if any failed."""
        if self.gray is not None and self.state != self._disk_state:
            self.unsaved[self.index] = (self.state, self.size)
        notes, failed = [], []
        for index, (state, size) in sorted(self.unsaved.items()):
            try:
                note = self._write(index, state, size)
                notes.append(note.rstrip("; ") if state == UNLABELLED else note + f"saved {self.label_path(index).name}")
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
        if 0 <= self.index < len(self.images):
            self.history[self.index] = (self.undo_stack, self.redo_stack)
        self.index = index
        self.undo_stack, self.redo_stack = self.history.get(index, ([], []))
        self.selected, self._drag_from, self.last_click = None, None, None
        self.proposals = np.zeros((0, 3))
        self._disk_bytes = None
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
        if self.state.labelled:
            self.tracks[index] = self.state.points
        if index in self.malformed:
            self.error = f"malformed label file {self.malformed[index]} (moved aside to .bad if you edit)"
        if index in self.unsaved:  # an edit that could not be saved before: keep showing it, retry
            self.state = self.unsaved[index][0]
            self.save()
        if not self.state.labelled:
            self._propose()
        return True

    def _propose(self) -> None:
        """Model proposals and/or points carried from the previous frames. Never written by
        themselves: only Enter (or the accept-and-next key) turns them into labels."""
        model = np.zeros((0, 3))
        if self.proposer is not None:
            try:
                found = np.asarray(self.proposer(self.raw), dtype=np.float64)
                found = found.reshape(-1, found.shape[-1] if found.ndim == 2 else 2)
                scores = found[:, 2] if found.shape[1] >= 3 else np.ones(len(found))
                model = self._snapped_proposals(np.column_stack([found[:, :2], scores]))
                self.message = self._proposal_message(model)
            except Exception as e:  # a model failure must not stop labelling
                self.message = f"model failed on {self.name}: {e}"
        carried = self._carried_points(model) if self.carry else np.zeros((0, 3))
        self.proposals = carried if len(carried) else model
        if len(self.shown_proposals):
            self.pending.add(self.index)

    def _snapped_proposals(self, model: np.ndarray) -> np.ndarray:
        if not self.snap or self.gray is None:
            return model
        return snap_proposals(self.gray, model, self.snap_radius)

    def _proposal_message(self, model: np.ndarray) -> str:
        """What the model found, in words that never suggest "no target" when it is merely unsure."""
        if not len(model):
            return "model: 0 proposals (n marks no target; Enter does nothing)"
        shown = int((model[:, 2] >= self.score_threshold - 1e-12).sum())
        if shown:
            return f"model: {shown} proposal{'s' if shown != 1 else ''}" + (
                f" (+{len(model) - shown} weaker: , shows them)" if shown < len(model) else "")
        return (f"model: 0 proposals >= {self.score_threshold:.2f} ({len(model)} weaker: , shows them): "
                "look, click, or n if there is none")

    def _carried_points(self, model: np.ndarray) -> np.ndarray:
        """The previous frame's points, each moved to where its motion over the last two frames
        predicts it, then re-snapped in this frame around that prediction (or to a model proposal
        that agrees with it). Score 1: carried points are always shown."""
        last = self.tracks.get(self.index - 1)
        if not last or self.gray is None:
            return np.zeros((0, 3))
        before = self.tracks.get(self.index - 2, ())
        out = []
        for u, v in last:
            pu, pv = u, v
            if before:
                d = np.hypot(*(np.array(before) - (u, v)).T)
                k = int(np.argmin(d))
                if d[k] <= 4 * TRACK_RADIUS:  # the same target one frame earlier: constant velocity
                    pu, pv = 2 * u - before[k][0], 2 * v - before[k][1]
            if len(model):
                d = np.hypot(model[:, 0] - pu, model[:, 1] - pv)
                if d.min() <= TRACK_AGREE:
                    pu, pv = model[int(np.argmin(d)), :2]
            found = snap_region(self.gray, pu, pv, max(self.snap_radius, TRACK_RADIUS)).point if self.snap else None
            out.append((*(found or self._inside(pu, pv)), 1.0))
        return np.array(out, dtype=np.float64).reshape(-1, 3)

    @property
    def shown_proposals(self) -> np.ndarray:
        """Proposals at or above the score threshold, (N, 3) u, v, score."""
        return self.proposals[self.proposals[:, 2] >= self.score_threshold - 1e-12]

    def step_threshold(self, direction: int) -> None:
        self.score_threshold = float(np.clip(round(self.score_threshold + direction * THRESHOLD_STEP, 4), 0.0, 1.0))
        self.message = f"proposal threshold {self.score_threshold:.2f}: {len(self.shown_proposals)} of {len(self.proposals)} shown"

    def _inside(self, u: float, v: float) -> tuple[float, float]:
        w, h = self.size
        return min(max(float(u), -0.5), w - 0.5), min(max(float(v), -0.5), h - 0.5)

    def go(self, index: int, step: int = 1) -> bool:
        """Open image ``index``; an unreadable one is reported and skipped in direction ``step``.

        Returns False when no readable image was found that way (the current one stays open).
        """
        if not self.images:
            return False
        self.message = ""  # stale messages go; what navigation has to say is set below
        self.save()
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
        return self.first_in_state_from(start, "unlabelled")

    def image_state(self, index: int) -> str:
        """One of REVIEW_STATES for the file list (the first that applies, uncertain last)."""
        if self.images[index].name in self.bad_images:
            return "unreadable"
        if index == self.index and self.editable:
            state = self.state
            if not state.labelled:
                return "proposals pending" if len(self.shown_proposals) else "unlabelled"
            return "uncertain" if state.uncertain else "labelled" if state.points else "no target"
        if index not in self.labelled:
            return "proposals pending" if index in self.pending else "unlabelled"
        if index in self.uncertain_images:
            return "uncertain"
        return "no target" if index in self.no_target_images else "labelled"

    def first_in_state_from(self, start: int, state: str) -> int | None:
        """The first image at or after ``start`` (wrapping) in review ``state``; "unlabelled"
        also takes images with proposals pending (both still need a label)."""
        n = len(self.images)
        wanted = {state, "proposals pending"} if state == "unlabelled" else {state}
        for k in range(n):
            i = (start + k) % n
            if state in ("unlabelled", "proposals pending", "unreadable"):
                # cheap test first: no label file and not known bad
                if state != "unreadable" and (i in self.labelled or self.images[i].name in self.bad_images):
                    continue
            if self.image_state(i) in wanted:
                return i
        return None

    def progress(self) -> tuple[int, int, int]:
        """(labelled, images to label, unreadable): "to label" leaves out known-unreadable images,
        so labelled + what ``u`` still visits == images to label."""
        bad = sum(1 for p in self.images if p.name in self.bad_images)
        return len(self.labelled), len(self.images) - bad, bad

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
        self.message = ""
        self.undo_stack.append(self.state)
        self.redo_stack.clear()
        self._set(state)
        self.proposals = np.zeros((0, 3))
        self.pending.discard(self.index)

    def _set(self, state: State) -> None:
        self.state = state
        if state.labelled:
            self.tracks[self.index] = state.points
        else:
            self.tracks.pop(self.index, None)
        self.save()

    def snapped(self, u: float, v: float) -> tuple[float, float]:
        """Where a click at (u, v) lands: the target region's centroid when snapping is on; the
        click itself, with "not snapped" in the message, when nothing stands out."""
        assert self.gray is not None
        click = self._inside(u, v)
        point = click
        if self.snap:
            found = snap_region(self.gray, u, v, self.snap_radius)
            if found.point is not None:
                point = found.point
        self.last_click = (click, point)
        return point

    def add(self, u: float, v: float) -> int | None:
        """Add a point at a click (snapped); returns its index. Proposals on show are replaced."""
        if not self.editable:
            return None
        point = self.snapped(u, v)
        self._commit(State((*self.state.points, point), True, self.state.uncertain))
        self._say_snap()
        self.selected = len(self.state.points) - 1
        return self.selected

    def _say_snap(self) -> None:
        if self.snap and self.last_click and self.last_click[0] == self.last_click[1]:
            self.message = ("not snapped: nothing stands out here (point kept where clicked); " + self.message).rstrip("; ")

    def nearest(self, u: float, v: float, max_distance: float) -> int | None:
        """Index of the point closest to (u, v) within ``max_distance`` pixels, or None."""
        if not self.state.points:
            return None
        d = np.hypot(*(np.array(self.state.points) - (u, v)).T)
        i = int(np.argmin(d))
        return i if d[i] <= max_distance else None

    def delete(self, index: int | None = None) -> None:
        """Remove a point (default: the selected one). Removing the last one leaves the image
        unlabelled, as undoing its click would: only ``n`` says "no target"."""
        index = self.selected if index is None else index
        if index is None or not (0 <= index < len(self.state.points)):
            return
        points = self.state.points[:index] + self.state.points[index + 1:]
        flags = frozenset(i - (i > index) for i in self.state.uncertain if i != index)
        self._commit(State(points, True, flags) if points else UNLABELLED)
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
            self.state = State(tuple(points), True, self.state.uncertain)
            return
        before, self._drag_from = self._drag_from, None
        self.state = before
        self._commit(State(tuple(points), True, before.uncertain))
        self._say_snap()

    def nudge(self, du: float, dv: float) -> None:
        """Move the selected point by (du, dv) pixels exactly (no snapping)."""
        if self.selected is None or not (0 <= self.selected < len(self.state.points)):
            return
        w, h = self.size
        u, v = self.state.points[self.selected]
        points = list(self.state.points)
        points[self.selected] = (min(max(u + du, -0.5), w - 0.5), min(max(v + dv, -0.5), h - 0.5))
        self._commit(State(tuple(points), True, self.state.uncertain))

    def no_target(self) -> None:
        """Mark the image as looked at with no target (writes ``0``)."""
        if self.editable:
            self._commit(State((), True))
            self.selected = None

    def toggle_uncertain(self) -> bool:
        """Flag the selected point uncertain (or clear the flag); kept in the label file."""
        if self.selected is None or not (0 <= self.selected < len(self.state.points)):
            self.message = "select a point first (click it) to flag it uncertain"
            return False
        flags = self.state.uncertain ^ {self.selected}
        selected = self.selected
        self._commit(State(self.state.points, True, frozenset(flags)))
        self.selected = selected
        self.message = f"point #{selected + 1} {'uncertain' if selected in flags else 'no longer uncertain'}; " + self.message
        return True

    def accept_proposals(self) -> bool:
        """Accept the proposals on show. With none, nothing happens: "no target" is only ever
        written by ``no_target`` (a model that finds nothing is not a label)."""
        shown = self.shown_proposals
        if not self.editable or not len(shown):
            self.message = "no proposals to accept (n marks no target)"
            return False
        self._commit(State(tuple(self._inside(u, v) for u, v, _ in shown), True))
        return True

    def accept_and_next(self) -> bool:
        """One key per frame: accept what is proposed (if anything) and open the next image."""
        if len(self.shown_proposals):
            self.accept_proposals()
        return self.next()

    def undo(self) -> bool:
        return self._step(self.undo_stack, self.redo_stack)

    def redo(self) -> bool:
        return self._step(self.redo_stack, self.undo_stack)

    def _step(self, back: list, forth: list) -> bool:
        """Go to the state on top of ``back``, keeping the current one on ``forth`` (undo / redo)."""
        if not back:
            return False
        self.message = ""
        forth.append(self.state)
        self._set(back.pop())
        self.selected = None
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
        flagged = f", {len(self.state.uncertain)} uncertain" if self.state.uncertain else ""
        return "no target" if not n else f"labelled, {n} point{'s' if n > 1 else ''}{flagged}"

    def pixel_value(self, u: float, v: float) -> str:
        """The raw value(s) under pixel (u, v), as stored (all channels of a colour image)."""
        if self.raw is None:
            return ""
        iu, iv = math.floor(u + 0.5), math.floor(v + 0.5)  # the pixel shown there (round() ties to even)
        h, w = self.raw.shape[:2]
        if not (0 <= iu < w and 0 <= iv < h):
            return ""
        value = self.raw[iv, iu]
        return " ".join(f"{x:g}" for x in np.ravel(value))

    def quit(self) -> bool:
        """Save what is pending; False if some edit could not be written (the caller must ask)."""
        self.save()
        return not self.unsaved
