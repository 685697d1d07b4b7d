"""Point tracks over time: a constant-velocity Kalman filter per track, Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) inside a gate in pixels, and the scene's frame-to-frame
shift by phase correlation (``cv2.phaseCorrelate``) so that predictions follow a panning camera.

    tracker = PointTracker(TrackOptions())
    shift = SceneShift()
    for image in frames:
        rows = tracker.update(model.predict(image, conf=tracker.detect_conf), shift(image))

Rules (docs/tracking.md):

- Detections scoring at least ``conf`` may start a track; a new track is *tentative*.
- A tentative track is *confirmed* once it has ``confirm_hits`` detections in the last
  ``confirm_window`` frames and has moved ``min_move`` px against the background
  within the last ``MOVE_WINDOW`` frames (clutter stands still in the scene; a target that hovers still
  needs ``min_move 0``).
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
MOTION_POINTS = 5  # detections the line is fitted to, at least (two clutter peaks a few px apart look like motion)
MOTION_Z = 4.0  # how clearly a track's fitted speed must stand above its jitter to count as moving
CHI2_GATE = 13.8  # squared Mahalanobis distance: 99.9 % of a 2-D Gaussian


@dataclass
class TrackOptions:
    """How tracks start, are confirmed, continue and end; defaults measured on ``benchmarks.tracking``."""

    conf: float = 0.5  # detections at or above this may start a track
    keep_conf: float = 0.2  # a confirmed track continues with detections down to this
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

    def __post_init__(self) -> None:
        if not 1 <= self.confirm_hits <= self.confirm_window <= 62:
            raise ValueError(f"--confirm M N needs 1 <= M <= N <= 62, got M={self.confirm_hits} N={self.confirm_window}")
        if self.max_missed < 0 or self.gate <= 0 or self.min_move < 0 or self.max_points < 1 or self.trail < 1:
            raise ValueError("max_missed and min_move must be >= 0; gate, max_points and trail > 0")
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
    __slots__ = ("age", "birth", "birth_step", "check_step", "confirmed_frame", "confirmed_step", "history", "hits",
                 "last_hit", "missed", "path", "score_sum", "speed_n", "speed_sum", "track_id", "trail")

    def __init__(self, step: int, frame: int, origin: np.ndarray, score: float, trail: int):
        self.track_id = 0
        self.birth = self.last_hit = frame  # frame labels, for the summary
        self.confirmed_frame = -1
        self.birth_step, self.confirmed_step, self.check_step = step, -1, 0  # the tracker's own frame count
        self.history = 1  # bit i: a detection i frames ago
        self.hits, self.missed, self.age = 1, 0, 0
        # Its recent detections (frames since birth, u, v in scene coordinates: image position minus the
        # camera's offset), for min_move.
        self.path: deque[tuple[float, float, float]] = deque()
        self.add_point(step, origin)
        self.score_sum, self.speed_sum, self.speed_n = score, 0.0, 0
        self.trail: deque[tuple[float, float]] = deque(maxlen=trail)  # scene coordinates

    def add_point(self, step: int, point: np.ndarray) -> None:
        """A detection's scene position, into the window ``moved`` looks at."""
        t = float(step - self.birth_step)
        self.path.append((t, float(point[0]), float(point[1])))
        while self.path[0][0] <= t - MOVE_WINDOW:
            self.path.popleft()

    def moved(self, jitter: float, window: int = MOVE_WINDOW) -> float:
        """How far its detections moved in the scene over the last ``window`` frames, by a straight
        line fitted to them (speed x time span). 0 for fewer than MOTION_POINTS detections, and
        unless the speed stands MOTION_Z standard errors clear of zero, the detections' scatter about
        the line taken as at least ``jitter``."""
        if len(self.path) < MOTION_POINTS:  # most tentative tracks: no array to build
            return 0.0
        path = np.array(self.path)
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
        self.ended: list[TrackSummary] = []  # confirmed tracks that ended since the last take_ended()

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
        if self.step - track.confirmed_step < SETTLE_WINDOW or self.step < track.check_step:
            return False
        track.check_step = self.step + 5
        recent = sum(1 for t, _, _ in track.path if t > track.path[-1][0] - SETTLE_WINDOW)
        return recent >= SETTLE_WINDOW / 2 and track.moved(self.options.jitter, SETTLE_WINDOW) < self.options.min_move

    def _inside(self, size: tuple[int, int] | None) -> Callable[[np.ndarray], bool]:
        """Whether a point is ``border`` px or more inside a frame of ``size``: clutter cut by the edge
        slides along it with a panning camera, and looks as if it moved."""
        if size is None or self.options.border <= 0:
            return lambda point: True
        (w, h), b = size, self.options.border
        return lambda point: bool(b <= point[0] <= w - 1 - b and b <= point[1] <= h - 1 - b)

    def update(self, points: np.ndarray, shift: tuple[float, float] | np.ndarray = (0.0, 0.0), steps: int = 1,
               frame: int | None = None, size: tuple[int, int] | None = None) -> list[TrackPoint]:
        """One frame: ``points`` (N, 3) ``u, v, score`` (at least :attr:`detect_conf`; others are ignored),
        the scene's ``shift`` (dx, dy) since the previous frame, ``steps`` frames since it (> 1 over a gap).
        ``frame`` labels this frame in summaries (default: a count); ``size`` (width, height): no track
        starts or is confirmed within ``border`` px of the frame's edge. Returns the tracks seen or
        coasting in this frame: confirmed ones (detected, or coasting), and tentative ones detected."""
        o = self.options
        steps = max(int(steps), 1)
        self.step += steps
        self.frame = self.step if frame is None else int(frame)
        points = np.asarray(points, float).reshape(-1, 3)
        shift = np.asarray(shift, float).reshape(2) if o.motion else np.zeros(2)
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
                self.tracks.append(_Track(self.step, self.frame, points[d, :2] - self.offset, points[d, 2], o.trail))
            for i, d in enumerate(born):
                matched[start + i] = d

        out, keep = [], np.ones(len(self.tracks), bool)
        for t, track in enumerate(self.tracks):
            recent = bin(track.history).count("1")
            if not track.track_id:
                if (recent >= o.confirm_hits and inside(self.x[t, :2])
                        and (o.min_move <= 0 or track.moved(o.jitter) >= o.min_move)):
                    track.track_id, self.next_id = self.next_id, self.next_id + 1
                    track.confirmed_frame, track.confirmed_step = self.frame, self.step
                elif track.missed > o.max_missed or (track.age + 1 >= o.confirm_window and recent < o.confirm_hits):
                    keep[t] = False
                    continue
            elif track.missed > o.max_missed or (o.min_move > 0 and self.settled(track)):
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


class SceneShift:
    """The scene's shift (dx, dy) in px from the previous frame to this one, by phase correlation on
    a copy at most ``side`` px wide with small bright spots (targets) filtered out.

    Each frame is compared with a key frame, not with the one before, so that the small error of
    each estimate does not add up while the key frame lasts; the key frame is renewed every
    ``rekey`` frames, after a weak correlation peak, or when the view has moved a quarter of the
    frame. (0, 0) for the first frame and after a change of size.
    """

    def __init__(self, side: int = 256, rekey: int = 50, min_response: float = 0.05):
        self.side, self.rekey, self.min_response = side, rekey, min_response
        self.key: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.window: np.ndarray | None = None
        self.total = np.zeros(2)  # summed shift since the first frame
        self.key_total = np.zeros(2)
        self.age = 0

    def _small(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gray = to_gray(image)
        h, w = gray.shape
        scale = max(1.0, max(h, w) / self.side)
        if scale > 1:
            gray = cv2.resize(gray, (max(int(round(w / scale)), 8), max(int(round(h / scale)), 8)), interpolation=cv2.INTER_AREA)
        gray = cv2.medianBlur(gray, 5)  # small bright targets out: a moving one would pull the shift along
        return gray, np.array([w / gray.shape[1], h / gray.shape[0]])

    def _correlate(self, a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
        (dx, dy), response = cv2.phaseCorrelate(a, b, self.window)
        if not response >= self.min_response or not math.isfinite(dx + dy):
            return None
        return np.array([dx, dy]) * scale

    def __call__(self, image: np.ndarray) -> tuple[float, float]:
        gray, scale = self._small(image)
        previous, self.previous = self.previous, gray
        if self.key is None or previous is None or self.key.shape != gray.shape:
            self.window = cv2.createHanningWindow(gray.shape[::-1], cv2.CV_32F)
            self.key, self.key_total, self.age = gray, self.total.copy(), 0
            return 0.0, 0.0
        self.age += 1
        from_key = self._correlate(self.key, gray, scale)
        if from_key is not None:
            total = self.key_total + from_key
        else:  # the key frame no longer matches: the step from the previous frame, then a new key
            step = self._correlate(previous, gray, scale)
            total = self.total + (step if step is not None else 0.0)
        step, self.total = total - self.total, total
        far = np.abs(self.total - self.key_total) > np.array(image.shape[1::-1]) / 4
        if from_key is None or self.age >= self.rekey or far.any():
            self.key, self.key_total, self.age = gray, self.total.copy(), 0
        return float(step[0]), float(step[1])


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
    g.add_argument("--no-motion", action="store_true", help="do not follow the camera's shift (a fixed camera)")
    g.add_argument("--trail", type=number(int, 1), default=d.trail, help="trail length in frames on the video (default: %(default)s)")


def track_options(args: argparse.Namespace, conf: float | None = None) -> TrackOptions:
    """TrackOptions from :func:`add_track_options`'s arguments and the start threshold ``conf`` (None:
    the default); raises ValueError for a bad combination."""
    hits, window = args.confirm
    return TrackOptions(conf=TrackOptions.conf if conf is None else conf, keep_conf=args.keep_conf,
                        confirm_hits=hits, confirm_window=window,
                        max_missed=args.max_missed, gate=args.gate, min_move=args.min_move, motion=not args.no_motion,
                        trail=args.trail)


__all__ = ["PointTracker", "SceneShift", "TrackOptions", "TrackPoint", "TrackSummary", "add_track_options", "track_options"]
