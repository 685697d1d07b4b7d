"""Point tracks over time: a constant-velocity Kalman filter per track, Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) inside a gate in pixels, and the camera's frame-to-frame
shift measured on background features (Lucas-Kanade optical flow) off the targets, so that
predictions follow a panning camera, including one that follows its target.

    tracker = PointTracker(TrackOptions())
    shift = SceneShift()
    for image in frames:
        rows = tracker.update(model.predict(image, conf=tracker.detect_conf), shift(image))

Rules (docs/tracking.md):

- Detections on one bright object (:func:`object_extents`) become one point (:func:`join_objects`).
- The camera's shift is fitted to background features off the objects and confirmed tracks
  (:meth:`FrameMotion.fit`); a view with too few is textureless: no shift is guessed.
- Detections scoring at least ``conf`` may start a track; a new track is *tentative*.
- A tentative track is *confirmed* once it has ``confirm_hits`` detections in the last
  ``confirm_window`` frames and has moved ``min_move`` px against the background within the last
  ``MOVE_WINDOW`` frames (clutter stands still in the scene), or has stood on clear sky (no
  background feature near it) for ``clear_sky`` detections in a row; never while fixed to the pixel
  (a camera's overlay).
- A confirmed track also continues with detections down to ``keep_conf`` (a dim target keeps its
  track); it coasts on its prediction while unseen and ends after ``max_missed`` frames unseen.
- A tentative track that cannot reach ``confirm_hits`` in a full window, or is unseen for
  ``max_missed`` frames, is dropped.

Persistent IDs (1, 2, ...) are given when a track is confirmed. Memory per track is fixed (a
trail of ``trail`` positions), and ended tracks leave only a :class:`TrackSummary`.

Kept free of torch so the command line's ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from simple_keypoint.images import to_gray
from simple_keypoint.options import FRACTION, number

# min_move is measured over at most this many recent frames, so that a small error of the camera
# shift, summed over a long time, never makes still clutter look as if it moved.
MOVE_WINDOW = 30
SETTLE_WINDOW = 20  # a confirmed track that has not moved over this many frames ends
# Where a track ended standing still, clutter stands: a new track there is not confirmed by motion
# for this many frames (the same clutter point would otherwise pass the motion test again and again).
SPOT_MEMORY = 300
SPOT_RADIUS = 4.0  # px (scene)
# A point whose last OVERLAY_HITS detections sit on the same pixel position to within OVERLAY_PX is
# drawn on the image (a camera's text or logo) or a defective pixel: a real target's detections
# scatter with the sensor's noise. Not confirmed, and a confirmed track that turns out so ends.
OVERLAY_HITS = 8
OVERLAY_PX = 0.01
MOTION_POINTS = 10  # detections the line is fitted to, at least (two clutter peaks a few px apart look like motion)
# A target crawling across the view (a distant airplane: under 0.1 px/frame) moves too little in
# MOVE_WINDOW frames; a track that lives long is also tested over LONG_WINDOW frames, on one
# detection in every LONG_STEP frames.
LONG_WINDOW = 150
LONG_STEP = 5
MOTION_Z = 6.0  # how clearly a track's fitted speed must stand above its jitter to count as moving
CHI2_GATE = 13.8  # squared Mahalanobis distance: 99.9 % of a 2-D Gaussian

# Camera motion (SceneShift, FrameMotion): background corners followed by optical flow.
MAX_FEATURES = 80  # corners followed per frame
MIN_CORNER = 1e-4  # OpenCV's corner strength (min eigenvalue, 8-bit image): weaker is flat sky or noise
REFRESH = 10  # frames between fresh corners
INLIER_PX = 0.75  # px: features agreeing on the shift
MIN_BACKGROUND = 6  # agreeing background features below this: the view is textureless
EXTENT_RADIUS = 48  # px: the largest object half-size (a target of up to about 90 px)
OBJECT_BACKGROUND = 64  # px: the box the local background of object_extents is averaged over
MASK_MARGIN = 4.0  # px around an object (detection or track) whose features do not measure the camera
CLEAR_RADIUS = 40.0  # px: a point with no background feature this close stands on clear sky
EXTENDED = 6  # px: an object at least this wide is placed at its centre, not at a detector peak
SMALL_HALF = 3.0  # px: the half-size assumed of an object whose extent is unknown


def _inside_any(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of ``points`` (n, 2) lie in any of ``boxes`` (m, 4: x0, y0, x1, y1)."""
    if not len(points) or not len(boxes):
        return np.zeros(len(points), bool)
    p, b = points[:, None, :], boxes[None]
    return ((p[..., 0] >= b[..., 0]) & (p[..., 0] <= b[..., 2]) & (p[..., 1] >= b[..., 1]) & (p[..., 1] <= b[..., 3])).any(axis=1)


def join_objects(points: np.ndarray, extents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One point per object: of the points on one object (one extent), the best-scoring one stays,
    moved to the object's centre when the object is EXTENDED px or more across (a large target's
    peaks wander over it; its centre does not). Points with no extent stay as they are. Returns the
    points, their extents and the detector's own positions of the points kept (n, 2)."""
    order = np.argsort(-points[:, 2], kind="stable")
    points, extents = points[order].copy(), extents[order]
    raw = points[:, :2].copy()
    keep = np.ones(len(points), bool)
    seen: dict[tuple[float, ...], int] = {}
    for i, e in enumerate(extents):
        if not np.isfinite(e[0]):
            continue
        key = tuple(e[:4])
        if key in seen:
            keep[i] = False
            continue
        seen[key] = i
        if max(e[2] - e[0], e[3] - e[1]) + 1 >= EXTENDED:
            points[i, :2] = e[4:6]
    return points[keep], extents[keep], raw[keep]


@dataclass
class TrackOptions:
    """How tracks start, are confirmed, continue and end; defaults measured on ``benchmarks.tracking``."""

    conf: float = 0.1  # detections at or above this may start a track (verifier scores: docs/tracking.md)
    keep_conf: float = 0.05  # a confirmed track continues with detections down to this
    confirm_hits: int = 4  # M: detections ...
    confirm_window: int = 6  # ... in the last N frames confirm a track
    max_missed: int = 5  # K: a track ends after this many frames unseen
    gate: float = 8.0  # px: the farthest a detection may be from a track's prediction
    min_move: float = 2.0  # px against the background before a track is confirmed (0: off)
    motion: bool = True  # follow the camera's shift (phase correlation)
    border: float = 10.0  # px: no track starts or is confirmed this close to the frame's edge
    max_points: int = 50  # detections per frame handed to the tracker
    trail: int = 30  # positions kept per track for the overlay
    accel: float = 0.5  # px/frame^2: the filter's process noise (how sharply targets turn)
    noise: float = 0.7  # px: the filter's measurement noise (the detector's spread)
    jitter: float = 1.0  # px: the least scatter assumed of a still point's detections (min_move's test)
    clear_sky: int = 8  # detections in a row with no background structure around: confirmed without moving (0: off)
    objects: bool = True  # detections on one bright object become one, at its centre when it is large

    def __post_init__(self) -> None:
        if not 1 <= self.confirm_hits <= self.confirm_window <= 62:
            raise ValueError(f"--confirm M N needs 1 <= M <= N <= 62, got M={self.confirm_hits} N={self.confirm_window}")
        if (self.max_missed < 0 or self.gate <= 0 or self.min_move < 0 or self.max_points < 1 or self.trail < 1
                or self.clear_sky < 0):
            raise ValueError("max_missed, min_move and clear_sky must be >= 0; gate, max_points and trail > 0")
        if not 0 <= self.keep_conf <= 1 or not 0 <= self.conf <= 1:
            raise ValueError(f"conf and keep_conf must be in [0, 1], got {self.conf} and {self.keep_conf}")

    @property
    def detect_conf(self) -> float:
        """The threshold the detector runs at: the lower of the two."""
        return min(self.conf, self.keep_conf)


@dataclass
class TrackPoint:
    """One track in one frame: the filter's position (``u, v``) and the raw detection, if any."""

    track_id: int  # 0 while tentative
    confirmed: bool
    u: float
    v: float
    detection: tuple[float, float, float] | None  # (u, v, score); None while coasting
    trail: list[tuple[float, float]] = field(default_factory=list)  # recent positions, oldest first (confirmed only)


@dataclass
class TrackSummary:
    """A confirmed track once it has ended."""

    track_id: int
    first_frame: int  # its first detection (before confirmation)
    confirmed_frame: int
    last_frame: int  # its last detection
    detections: int
    mean_speed: float  # px/frame against the background, while confirmed
    mean_score: float

    @property
    def length(self) -> int:
        return self.last_frame - self.first_frame + 1


class _Track:
    __slots__ = ("age", "birth", "birth_step", "check_step", "clear", "confirmed_frame", "confirmed_step", "half",
                 "history", "hits", "last_hit", "long_path", "missed", "path", "pixels", "score_sum", "speed_n",
                 "speed_sum", "track_id", "trail")

    def __init__(self, step: int, frame: int, origin: np.ndarray, score: float, trail: int):
        self.track_id = 0
        self.birth = self.last_hit = frame  # frame labels, for the summary
        self.confirmed_frame = -1
        self.birth_step, self.confirmed_step, self.check_step = step, -1, 0  # the tracker's own frame count
        self.history = 1  # bit i: a detection i frames ago
        self.hits, self.missed, self.age = 1, 0, 0
        self.clear = 0  # its latest detections in a row that stood on clear sky
        self.half = np.full(2, SMALL_HALF)  # its object's half-size (px), for the camera's mask
        self.pixels: deque[tuple[float, float]] = deque(maxlen=OVERLAY_HITS)  # its latest detections in the image
        # Its recent detections (frames since birth, u, v in scene coordinates: image position minus the
        # camera's offset), for min_move.
        self.path: deque[tuple[float, float, float]] = deque()
        self.long_path: deque[tuple[float, float, float]] = deque()  # the same, one every LONG_STEP frames
        self.add_point(step, origin)
        self.score_sum, self.speed_sum, self.speed_n = score, 0.0, 0
        self.trail: deque[tuple[float, float]] = deque(maxlen=trail)  # scene coordinates

    def add_point(self, step: int, point: np.ndarray) -> None:
        """A detection's scene position, into the window ``moved`` looks at."""
        t = float(step - self.birth_step)
        self.path.append((t, float(point[0]), float(point[1])))
        while self.path[0][0] <= t - MOVE_WINDOW:
            self.path.popleft()
        if not self.long_path or t - self.long_path[-1][0] >= LONG_STEP:
            self.long_path.append(self.path[-1])
            while self.long_path[0][0] <= t - LONG_WINDOW:
                self.long_path.popleft()

    def moved_long(self, jitter: float) -> float:
        """:meth:`moved` over the last LONG_WINDOW frames (0 until the track has lived longer than MOVE_WINDOW)."""
        if not self.long_path or self.long_path[-1][0] - self.long_path[0][0] < MOVE_WINDOW:
            return 0.0
        return self.moved(jitter, LONG_WINDOW, self.long_path)

    def moved(self, jitter: float, window: int = MOVE_WINDOW, points: deque | None = None) -> float:
        """How far its detections moved in the scene over the last ``window`` frames, by a straight
        line fitted to them (speed x time span). 0 for fewer than MOTION_POINTS detections, and
        unless the speed stands MOTION_Z standard errors clear of zero, the detections' scatter about
        the line taken as at least ``jitter``."""
        points = self.path if points is None else points
        if len(points) < MOTION_POINTS:  # most tentative tracks (and any after a textureless frame): no array
            return 0.0
        path = np.array(points)
        path = path[path[:, 0] > path[-1, 0] - window]
        n = len(path)
        if n < MOTION_POINTS:
            return 0.0
        t = path[:, 0] - path[:, 0].mean()
        spread = float(t @ t)
        if spread <= 0:
            return 0.0
        centred = path[:, 1:] - path[:, 1:].mean(axis=0)
        slope = t @ centred / spread
        speed2 = float(slope @ slope)
        rss = max(float((centred * centred).sum()) - speed2 * spread, 0.0)
        sigma = max(jitter, math.sqrt(rss / (2 * (n - 2))))
        speed = math.sqrt(speed2)
        if speed * math.sqrt(spread) < MOTION_Z * sigma:
            return 0.0
        # Both halves must move the same way at a like speed: a track that hopped once between two
        # clutter peaks fits a line too, but one of its halves stands still.
        for half in (path[: n // 2 + 1], path[n // 2:]):
            th = half[:, 0] - half[:, 0].mean()
            half_slope = th @ (half[:, 1:] - half[:, 1:].mean(axis=0)) / max(float(th @ th), 1e-9)
            if float(half_slope @ slope) < 0.5 * speed2:
                return 0.0
        return speed * float(path[-1, 0] - path[0, 0])

    def overlay(self) -> bool:
        """Whether its latest OVERLAY_HITS detections stood on one pixel position (OVERLAY_PX)."""
        if len(self.pixels) < OVERLAY_HITS:
            return False
        us, vs = zip(*self.pixels, strict=True)  # a few values: plain Python beats building an array
        return max(us) - min(us) <= OVERLAY_PX and max(vs) - min(vs) <= OVERLAY_PX

    def summary(self) -> TrackSummary:
        return TrackSummary(self.track_id, self.birth, self.confirmed_frame, self.last_hit, self.hits,
                            self.speed_sum / max(self.speed_n, 1), self.score_sum / self.hits)


class PointTracker:
    """Tracks of points ``(u, v, score)`` over frames; see the module's docstring for the rules."""

    def __init__(self, options: TrackOptions | None = None):
        self.options = options or TrackOptions()
        self.x = np.zeros((0, 4))  # u, v, du, dv per track (velocity against the background)
        self.P = np.zeros((0, 4, 4))
        self.tracks: list[_Track] = []
        self.frame = -1  # the label of the latest frame
        self.step = -1  # frames seen, gaps included
        self.next_id = 1
        self.offset = np.zeros(2)  # the camera's shift summed since the first frame
        self.shift = np.zeros(2)  # the camera's shift in the latest frame
        self.textured = True  # whether the latest frame showed enough background to measure it
        self.ended: list[TrackSummary] = []  # confirmed tracks that ended since the last take_ended()
        self.spots: deque[tuple[float, float, int]] = deque()  # scene x, y, step where tracks settled
        self.overlays: deque[tuple[float, float]] = deque(maxlen=100)  # image positions of overlays found

    @property
    def detect_conf(self) -> float:
        return self.options.detect_conf

    def take_ended(self) -> list[TrackSummary]:
        ended, self.ended = self.ended, []
        return ended

    def finish(self) -> list[TrackSummary]:
        """End every track (the stream is over); the summaries of all confirmed tracks not yet taken."""
        for track in self.tracks:
            if track.track_id:
                self.ended.append(track.summary())
        self.tracks, self.x, self.P = [], self.x[:0], self.P[:0]
        return self.take_ended()

    def _predict(self, shift: np.ndarray, steps: int) -> None:
        dt, q = float(steps), self.options.accel ** 2
        F = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        a, b, c = dt ** 4 / 4, dt ** 3 / 2, dt ** 2  # white-noise acceleration
        Q = q * np.array([[a, 0, b, 0], [0, a, 0, b], [b, 0, c, 0], [0, b, 0, c]])
        self.x = self.x @ F.T
        self.x[:, :2] += shift
        self.P = F @ self.P @ F.T + Q

    def _correct(self, rows: np.ndarray, z: np.ndarray) -> None:
        if not len(rows):
            return
        P, x = self.P[rows], self.x[rows]
        S = P[:, :2, :2] + np.eye(2) * self.options.noise ** 2
        K = P[:, :, :2] @ np.linalg.inv(S)  # (n, 4, 2)
        x = x + (K @ (z - x[:, :2])[:, :, None])[:, :, 0]
        P = P - K @ P[:, :2, :]
        self.x[rows], self.P[rows] = x, P

    def _assign(self, tracks: np.ndarray, dets: np.ndarray, points: np.ndarray) -> list[tuple[int, int]]:
        """Pairs (track row, detection row) within the gate, with the least total Mahalanobis distance;
        within ``gate`` px and within the filter's own uncertainty (CHI2_GATE), so a track whose motion
        is known does not jump to a nearby clutter peak."""
        if not len(tracks) or not len(dets):
            return []
        residual = points[None, dets, :2] - self.x[tracks, None, :2]  # (t, d, 2)
        S = self.P[tracks, :2, :2] + np.eye(2) * self.options.noise ** 2
        m2 = np.einsum("tdi,tij,tdj->td", residual, np.linalg.inv(S), residual)  # squared Mahalanobis distance
        ok = (np.linalg.norm(residual, axis=2) <= self.options.gate) & (m2 <= CHI2_GATE)
        r, c = linear_sum_assignment(np.where(ok, m2, 1e9))
        keep = ok[r, c]
        return list(zip(tracks[r[keep]].tolist(), dets[c[keep]].tolist(), strict=True))

    def settled(self, track: _Track) -> bool:
        """A confirmed track that has stood still for SETTLE_WINDOW frames (it slid from a target onto
        still clutter, was clutter that seemed to move while it was confirmed, or the target stopped):
        checked every few frames."""
        if self.step - track.confirmed_step < SETTLE_WINDOW or self.step < track.check_step or not track.path:
            return False
        track.check_step = self.step + 5
        if self.options.clear_sky and track.clear >= self.options.clear_sky:
            return False  # still on clear sky is what a hovering target does; no clutter to slide onto
        recent = sum(1 for t, _, _ in track.path if t > track.path[-1][0] - SETTLE_WINDOW)
        return (recent >= SETTLE_WINDOW / 2 and track.moved(self.options.jitter, SETTLE_WINDOW) < self.options.min_move
                and track.moved_long(self.options.jitter) < self.options.min_move)

    def _crawled(self, track: _Track) -> bool:
        """Moved ``min_move`` over LONG_WINDOW (checked every LONG_STEP frames: a line fit per track is not free)."""
        if track.age < MOVE_WINDOW or track.age % LONG_STEP:
            return False
        return track.moved_long(self.options.jitter) >= self.options.min_move

    def _overlay(self, track: _Track) -> bool:
        """An overlay (:meth:`_Track.overlay`), or standing within 1 px of one found before."""
        if track.overlay():
            return True
        u, v = track.pixels[-1]
        return any((u - a) ** 2 + (v - b) ** 2 <= 1.0 for a, b in self.overlays)

    def _on_spot(self, track: _Track) -> bool:
        """Whether the track stands where a track recently ended standing still (SPOT_MEMORY, SPOT_RADIUS)."""
        while self.spots and self.spots[0][2] < self.step - SPOT_MEMORY:
            self.spots.popleft()
        _, x, y = track.path[-1]
        return any((x - a) ** 2 + (y - b) ** 2 <= SPOT_RADIUS ** 2 for a, b, _ in self.spots)

    def _inside(self, size: tuple[int, int] | None) -> Callable[[np.ndarray], bool]:
        """Whether a point is ``border`` px or more inside a frame of ``size``: clutter cut by the edge
        slides along it with a panning camera, and looks as if it moved."""
        if size is None or self.options.border <= 0:
            return lambda point: True
        (w, h), b = size, self.options.border
        return lambda point: bool(b <= point[0] <= w - 1 - b and b <= point[1] <= h - 1 - b)

    def _camera(self, points: np.ndarray, motion: FrameMotion, extents: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray]:
        """This frame's points joined per object, their extents, the camera's shift fitted to the
        features off every object and track (None when textureless), and which points stand on clear sky.
        Also the detector's own positions of the points (a joined object's point is its centre)."""
        o = self.options
        if o.objects and extents is None and motion.gray is not None and len(points):
            extents = object_extents(motion.gray, points)
        if o.objects and extents is not None:
            points, extents, raw = join_objects(points, extents)
        else:
            raw = points[:, :2].copy()
        # Masked: objects (a detection's bright region EXTENDED px or more across) and confirmed tracks
        # (in the previous frame, where they were). Not every detection: clutter detections sit on the
        # background's structure, which is what measures the camera.
        own = self._boxes(points[:, :2], extents)
        objects = np.zeros(len(points), bool)
        if extents is not None:
            across = np.maximum(extents[:, 2] - extents[:, 0], extents[:, 3] - extents[:, 1]) + 1
            objects = np.isfinite(extents[:, 0]) & (across >= EXTENDED)
        confirmed = np.array([t.track_id > 0 for t in self.tracks], bool)
        tracks = np.hstack([self.x[confirmed, :2] - self.half[confirmed] - MASK_MARGIN,
                            self.x[confirmed, :2] + self.half[confirmed] + MASK_MARGIN])
        off = ~_inside_any(motion.after, own[objects]) & ~_inside_any(motion.before, tracks)
        shift = motion.fit(off)
        background = motion.after[off]
        clear = np.ones(len(points), bool)
        if len(points) and len(background):  # a point's own features do not count against it
            near = ((points[:, None, :2] - background[None]) ** 2).sum(axis=2) <= CLEAR_RADIUS ** 2
            p, b = background[None], own[:, None]
            mine = (p[..., 0] >= b[..., 0]) & (p[..., 0] <= b[..., 2]) & (p[..., 1] >= b[..., 1]) & (p[..., 1] <= b[..., 3])
            clear = ~(near & ~mine).any(axis=1)
        return points, extents, raw, shift, clear

    @property
    def half(self) -> np.ndarray:
        return np.array([t.half for t in self.tracks]).reshape(-1, 2)

    @staticmethod
    def _boxes(points: np.ndarray, extents: np.ndarray | None) -> np.ndarray:
        """Each point's mask box (x0, y0, x1, y1): its object's box, or a small square, grown by MASK_MARGIN."""
        boxes = np.hstack([points - SMALL_HALF, points + SMALL_HALF])
        if extents is not None:
            known = np.isfinite(extents[:, 0])
            boxes[known] = extents[known, :4]
        return boxes + np.array([-1, -1, 1, 1]) * MASK_MARGIN

    def update(self, points: np.ndarray, shift: tuple[float, float] | np.ndarray | FrameMotion = (0.0, 0.0),
               steps: int = 1, frame: int | None = None, size: tuple[int, int] | None = None,
               extents: np.ndarray | None = None) -> list[TrackPoint]:
        """One frame: ``points`` (N, 3) ``u, v, score`` (at least :attr:`detect_conf`; others are ignored),
        the camera's motion since the previous frame: a :class:`FrameMotion` from :class:`SceneShift`
        (the shift is then fitted off the targets, and points on one object are joined) or a shift
        (dx, dy); ``steps`` frames since it (> 1 over a gap). ``frame`` labels this frame in summaries
        (default: a count); ``size`` (width, height): no track starts or is confirmed within ``border``
        px of the frame's edge. ``extents``: the points' objects as :func:`object_extents` gives them
        (default: measured on the FrameMotion's image). Returns the tracks seen or coasting in this
        frame: confirmed ones (detected, or coasting), and tentative ones detected."""
        o = self.options
        steps = max(int(steps), 1)
        self.step += steps
        self.frame = self.step if frame is None else int(frame)
        points = np.asarray(points, float).reshape(-1, 3)
        if extents is not None:
            extents = np.asarray(extents, float).reshape(-1, 6)[points[:, 2] >= o.detect_conf]
        points = points[points[:, 2] >= o.detect_conf]
        clear = np.zeros(len(points), bool)
        raw = points[:, :2]  # the detector's positions (for the overlay test)
        if isinstance(shift, FrameMotion):
            if o.motion:
                points, extents, raw, fitted, clear = self._camera(points, shift, extents)
                clear &= o.clear_sky > 0
                self.textured = fitted is not None
                shift = np.zeros(2) if fitted is None else fitted  # textureless: each track's own motion only
                if fitted is None:  # scene positions before and after cannot be compared: the motion test starts over
                    for track in self.tracks:
                        track.path.clear()
                        track.long_path.clear()
            else:  # a fixed camera: objects are still joined
                if o.objects and extents is None and shift.gray is not None and len(points):
                    extents = object_extents(shift.gray, points)
                if o.objects and extents is not None:
                    points, extents, raw = join_objects(points, extents)
                shift = np.zeros(2)
        else:
            shift = np.asarray(shift, float).reshape(2) if o.motion else np.zeros(2)
            extents = None
        self.shift = shift
        self.offset += shift
        self._predict(shift, steps)
        mask = (1 << o.confirm_window) - 1
        for track in self.tracks:
            track.history = (track.history << steps) & mask
            track.missed += steps
            track.age += steps

        high = np.flatnonzero(points[:, 2] >= o.conf)
        low = np.flatnonzero((points[:, 2] >= o.keep_conf) & (points[:, 2] < o.conf))
        rows = np.arange(len(self.tracks))
        pairs = self._assign(rows, high, points)
        taken = {t for t, _ in pairs}
        waiting = np.array([t for t in rows if t not in taken and self.tracks[t].track_id], int)
        pairs += self._assign(waiting, low, points)
        if pairs:
            t_rows, d_rows = map(np.array, zip(*pairs, strict=True))
            self._correct(t_rows, points[d_rows, :2])
        matched = dict(pairs)
        for t, d in matched.items():
            track = self.tracks[t]
            track.history |= 1
            track.hits += 1
            track.missed = 0
            track.last_hit = self.frame
            track.score_sum += points[d, 2]
            track.clear = track.clear + 1 if clear[d] else 0
            track.pixels.append((float(raw[d, 0]), float(raw[d, 1])))
            if extents is not None and np.isfinite(extents[d, 0]):
                track.half = np.maximum((extents[d, 2:4] - extents[d, :2]) / 2, SMALL_HALF)
            if o.min_move > 0:
                track.add_point(self.step, points[d, :2] - self.offset)
            if track.track_id:
                track.speed_sum += float(np.hypot(*self.x[t, 2:]))
                track.speed_n += 1

        used = set(matched.values())
        born = [d for d in high.tolist() if d not in used]
        inside = self._inside(size)
        born = [d for d in born if inside(points[d, :2])]
        if born:
            start = len(self.tracks)
            p0 = np.diag([o.noise ** 2, o.noise ** 2, 9.0, 9.0])  # unknown velocity: a few px/frame
            self.x = np.vstack([self.x, np.column_stack([points[born, :2], np.zeros((len(born), 2))])])
            self.P = np.concatenate([self.P, np.repeat(p0[None], len(born), axis=0)])
            for d in born:
                track = _Track(self.step, self.frame, points[d, :2] - self.offset, points[d, 2], o.trail)
                track.clear = int(clear[d])
                track.pixels.append((float(raw[d, 0]), float(raw[d, 1])))
                if extents is not None and np.isfinite(extents[d, 0]):
                    track.half = np.maximum((extents[d, 2:4] - extents[d, :2]) / 2, SMALL_HALF)
                self.tracks.append(track)
            for i, d in enumerate(born):
                matched[start + i] = d

        out, keep = [], np.ones(len(self.tracks), bool)
        for t, track in enumerate(self.tracks):
            recent = bin(track.history).count("1")
            if not track.track_id:
                if (recent >= o.confirm_hits and inside(self.x[t, :2]) and not self._overlay(track)
                        and (o.min_move <= 0 or (o.clear_sky and track.clear >= o.clear_sky)
                             or ((track.moved(o.jitter) >= o.min_move or self._crawled(track)) and not self._on_spot(track)))):
                    track.track_id, self.next_id = self.next_id, self.next_id + 1
                    track.confirmed_frame, track.confirmed_step = self.frame, self.step
                elif track.missed > o.max_missed or (track.age + 1 >= o.confirm_window and recent < o.confirm_hits):
                    keep[t] = False
                    continue
            elif track.missed > o.max_missed or track.overlay() or (o.min_move > 0 and self.settled(track)):
                if track.pixels and track.overlay():
                    self.overlays.append(track.pixels[-1])
                elif track.missed <= o.max_missed and track.path:  # settled
                    self.spots.append((track.path[-1][1], track.path[-1][2], self.step))
                self.ended.append(track.summary())
                keep[t] = False
                continue
            u, v = self.x[t, :2]
            if track.track_id:
                track.trail.append((u - self.offset[0], v - self.offset[1]))
            d = matched.get(t)
            if track.track_id or d is not None:
                det = None if d is None else (float(points[d, 0]), float(points[d, 1]), float(points[d, 2]))
                trail = [(a + self.offset[0], b + self.offset[1]) for a, b in track.trail] if track.track_id else []
                out.append(TrackPoint(track.track_id, bool(track.track_id), float(u), float(v), det, trail))
        if not keep.all():
            self.tracks = [t for t, k in zip(self.tracks, keep, strict=True) if k]
            self.x, self.P = self.x[keep], self.P[keep]
        return out


@dataclass
class FrameMotion:
    """What :class:`SceneShift` measured between the previous frame and this one: background features
    followed from one to the other (``before`` -> ``after``, full-size px, each with its corner
    ``strength``) and this frame's ``gray`` image. The tracker fits the camera's shift to the features
    that lie off its detections and tracks (:meth:`fit`), so a target the camera follows cannot pull
    the shift along; too few consistent features left: the frame is textureless (``None``).

    Iterating gives the shift fitted to every feature, ``(0, 0)`` when textureless, as ``dx, dy``.
    """

    gray: np.ndarray | None
    before: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    after: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    strength: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    first: bool = False  # no frame before this one: nothing measured, shift (0, 0)

    def fit(self, keep: np.ndarray | None = None) -> np.ndarray | None:
        """The shift (dx, dy) most of the kept features' strength agrees on, to within INLIER_PX;
        None when fewer than MIN_BACKGROUND features agree (a textureless view: no shift to trust)."""
        if self.first:
            return np.zeros(2)
        moves = self.after - self.before
        weights = np.minimum(self.strength / MIN_CORNER, 10.0)  # stronger structure wins over soft cloud
        if keep is not None:
            moves, weights = moves[keep], weights[keep]
        if len(moves) < MIN_BACKGROUND:
            return None
        candidates = moves[:: max(1, len(moves) // 100)]
        agree = np.linalg.norm(moves[None] - candidates[:, None], axis=2) <= INLIER_PX
        best = agree[int(np.argmax(agree @ weights))]
        if best.sum() < MIN_BACKGROUND:
            return None
        return (moves[best] * weights[best, None]).sum(axis=0) / weights[best].sum()

    def __iter__(self):
        shift = self.fit()
        return iter((0.0, 0.0) if shift is None else (float(shift[0]), float(shift[1])))


class SceneShift:
    """The camera's motion from the previous frame to this one, measured on background features:
    corners (at least MIN_CORNER strong) followed from frame to frame by pyramidal Lucas-Kanade
    optical flow; new corners are found every REFRESH frames, or sooner when too few are left.
    Returns a :class:`FrameMotion`; the tracker fits the shift to the features off its targets.
    Works on a copy at most ``side`` px wide."""

    def __init__(self, side: int = 512, features: int = MAX_FEATURES):
        self.side, self.features = side, features
        self.previous: np.ndarray | None = None
        self.corners = np.zeros((0, 1, 2), np.float32)  # in the previous frame (small copy)
        self.strength = np.zeros(0, np.float32)
        self.to_8bit: tuple[float, float] | None = None
        self.age = 0

    def _eight_bit(self, gray: np.ndarray) -> np.ndarray:
        if gray.dtype == np.uint8:
            return gray
        if self.to_8bit is None:  # a fixed map for the whole stream, so brightness stays comparable
            low, high = np.percentile(gray, [0.5, 99.5])
            self.to_8bit = float(low), 255.0 / max(float(high - low), 1e-6)
        low, gain = self.to_8bit
        return np.clip((gray - low) * gain, 0, 255).astype(np.uint8)

    def _find_corners(self, small: np.ndarray) -> None:
        corners = cv2.goodFeaturesToTrack(small, self.features, 1e-4, 8, blockSize=5)
        if corners is None:
            self.corners, self.strength = np.zeros((0, 1, 2), np.float32), np.zeros(0, np.float32)
            return
        strength = cv2.cornerMinEigenVal(small, 5)
        at = np.round(corners[:, 0]).astype(int)
        s = strength[at[:, 1].clip(0, small.shape[0] - 1), at[:, 0].clip(0, small.shape[1] - 1)]
        keep = s >= MIN_CORNER
        self.corners, self.strength, self.age = corners[keep], s[keep], 0

    def __call__(self, image: np.ndarray) -> FrameMotion:
        raw = np.asarray(image)
        gray = to_gray(raw) if raw.ndim == 3 or raw.dtype != np.uint8 else raw
        h, w = gray.shape
        scale = max(1.0, max(h, w) / self.side)
        small = self._eight_bit(gray)
        if scale > 1:
            small = cv2.resize(small, (max(int(round(w / scale)), 8), max(int(round(h / scale)), 8)), interpolation=cv2.INTER_AREA)
        previous, self.previous = self.previous, small
        if previous is None or previous.shape != small.shape:
            self._find_corners(small)
            return FrameMotion(gray, first=True)
        motion = FrameMotion(gray)
        if len(self.corners):
            after, ok, _ = cv2.calcOpticalFlowPyrLK(previous, small, self.corners, None, winSize=(9, 9), maxLevel=2,
                                                    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))
            ok = ok[:, 0] == 1
            ok &= ((after[:, 0] >= 0) & (after[:, 0] < np.array(small.shape[::-1]))).all(axis=1)
            full = np.array([w / small.shape[1], h / small.shape[0]], np.float32)
            motion = FrameMotion(gray, self.corners[ok, 0] * full, after[ok, 0] * full, self.strength[ok])
            self.corners, self.strength = after[ok], self.strength[ok]
        self.age += 1
        if self.age >= REFRESH or len(self.corners) < self.features // 2:
            self._find_corners(small)
        return motion


def object_extents(gray: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each point's object: the connected region (8-connected) of pixels standing 4 noise levels
    above the local background (a box mean over about OBJECT_BACKGROUND px) that holds the
    brightest such pixel within a pixel or two of the point, found on a half-size copy (a target
    too small to show there has no extent, and needs none). (n, 6) ``x0, y0, x1, y1`` (its box,
    inclusive pixel indices) and ``u, v`` (its centre); NaN where the point has no such region or
    the region is more than 2 EXTENT_RADIUS px across (a bright structure, not a target)."""
    gray = np.asarray(gray, np.float32)
    points = np.asarray(points, float).reshape(-1, 3)
    out = np.full((len(points), 6), np.nan)
    if not len(points):
        return out
    h, w = gray.shape
    half = cv2.resize(gray, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA)
    hh, hw = half.shape
    small = cv2.resize(half, (max(hw // 2, 1), max(hh // 2, 1)), interpolation=cv2.INTER_AREA)
    k = max(OBJECT_BACKGROUND // 4 | 1, 3)
    background = cv2.resize(cv2.blur(small, (k, k), borderType=cv2.BORDER_REFLECT), (hw, hh), interpolation=cv2.INTER_LINEAR)
    excess = half - background
    sample = excess[::2, ::2]
    centre = float(np.median(sample))
    noise = max(1.4826 * float(np.median(np.abs(sample - centre))), 0.5)
    _, labels, stats, centroids = cv2.connectedComponentsWithStats((excess > centre + 4 * noise).astype(np.uint8),
                                                                   connectivity=8)
    # The 3 x 3 half-size pixels around each point: the brightest one on a region gives its label.
    u = np.clip(np.round((points[:, 0] - 0.5) / 2).astype(int), 0, hw - 1)
    v = np.clip(np.round((points[:, 1] - 0.5) / 2).astype(int), 0, hh - 1)
    du, dv = np.meshgrid([-1, 0, 1], [-1, 0, 1])
    nu, nv = np.clip(u[:, None] + du.ravel(), 0, hw - 1), np.clip(v[:, None] + dv.ravel(), 0, hh - 1)
    near, value = labels[nv, nu], excess[nv, nu]
    label = near[np.arange(len(points)), np.argmax(np.where(near > 0, value, -np.inf), axis=1)]
    x, y, bw, bh = (stats[label, i] for i in range(4))
    ok = (label > 0) & (2 * np.maximum(bw, bh) <= 2 * EXTENT_RADIUS)
    out[ok] = np.column_stack([2 * x, 2 * y, 2 * (x + bw) - 1, 2 * (y + bh) - 1, 2 * centroids[label] + 0.5])[ok]
    return out


def add_track_options(p: argparse.ArgumentParser) -> None:
    """The tracking options of ``simple-keypoint track`` (and ``detect --track``)."""
    d = TrackOptions()
    g = p.add_argument_group("tracking (simple-keypoint track, detect --track; docs/tracking.md)")
    g.add_argument("--keep-conf", type=FRACTION, default=d.keep_conf,
                   help="a confirmed track continues with detections down to this (default: %(default)s)")
    g.add_argument("--confirm", type=int, nargs=2, default=[d.confirm_hits, d.confirm_window], metavar=("M", "N"),
                   help="a track is confirmed after M detections in N frames (default: %(default)s)")
    g.add_argument("--max-missed", type=number(int, 0), default=d.max_missed,
                   help="a track ends after this many frames unseen (default: %(default)s)")
    g.add_argument("--gate", type=number(float, 0, low_open=True), default=d.gate,
                   help="px: the farthest a detection may be from a track's prediction (default: %(default)s)")
    g.add_argument("--min-move", type=number(float, 0), default=d.min_move,
                   help="px a track must move against the background before it is confirmed; 0 also confirms a "
                        "target that hovers still, and still clutter (default: %(default)s)")
    g.add_argument("--clear-sky", type=number(int, 0), default=d.clear_sky,
                   help="a track standing still with no background structure within 40 px is confirmed after this "
                        "many detections in a row there (0: a still track is never confirmed) (default: %(default)s)")
    g.add_argument("--no-objects", action="store_true",
                   help="keep every detection as it is (default: detections on one bright object become one)")
    g.add_argument("--no-motion", action="store_true", help="do not follow the camera's shift (a fixed camera)")
    g.add_argument("--trail", type=number(int, 1), default=d.trail, help="trail length in frames on the video (default: %(default)s)")


def track_options(args: argparse.Namespace, conf: float | None = None) -> TrackOptions:
    """TrackOptions from :func:`add_track_options`'s arguments and the start threshold ``conf`` (None:
    the default); raises ValueError for a bad combination."""
    hits, window = args.confirm
    return TrackOptions(conf=TrackOptions.conf if conf is None else conf, keep_conf=args.keep_conf,
                        confirm_hits=hits, confirm_window=window,
                        max_missed=args.max_missed, gate=args.gate, min_move=args.min_move, motion=not args.no_motion,
                        trail=args.trail, clear_sky=args.clear_sky, objects=not args.no_objects)


__all__ = ["PointTracker", "SceneShift", "TrackOptions", "TrackPoint", "TrackSummary", "add_track_options", "track_options"]
