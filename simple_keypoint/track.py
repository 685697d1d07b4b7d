"""Track points over time in a video, a stream, a webcam or a folder of frames (in name order).

    simple-keypoint track --source clip.mp4            # -> clip.mp4 (IDs, trails), clip.csv, clip_tracks.csv
    simple-keypoint track --source frames/ --keep-conf 0.1 --confirm 3 6
    simple-keypoint track --source a.mp4 b.mp4 frames/*.png    # several: each video, and each folder's frames
    simple-keypoint track --source 0 --no-motion       # a fixed webcam
    (the same as simple-keypoint detect --track ...)

The heatmap detector runs on every frame at the lower of --conf and --keep-conf; tracks start from
detections at or above --conf, are confirmed after M detections in N frames (--confirm M N) once
they have moved --min-move px against the background, continue with detections down to
--keep-conf, coast while unseen and end after --max-missed frames. The scene's shift between
frames (phase correlation) moves predictions and gates with a panning or shaking camera.

Each run writes to a new folder, output/track, output/track2, ... (as detect: --project/--name,
--exist-ok, --out; an --out already holding a file this run would write is refused unless
--exist-ok). A source gives OUT/<name>.mp4 (the frames with each confirmed track's ID and trail,
tentative detections dimmer, the heatmap's colour bar and the threshold; the input's size, .avi in
Motion-JPEG for an odd width or height), OUT/<name>.csv (frame, time_s, track_id, confirmed, u, v,
score, det_u, det_v: one row per track in each frame, u, v the filter's sub-pixel position,
det_u, det_v the raw detection, empty while a confirmed track coasts; tentative rows have no
track_id) and OUT/<name>_tracks.csv (one row per confirmed track: first, confirmed and last
frame, length, detections, mean speed in px/frame against the background, mean score). A folder
with a missing or unreadable frame is reported and tracks coast over the gap; frames of another
size end that source with an error. Details and measured defaults: docs/tracking.md.
"""

from __future__ import annotations

import argparse
import sys

from simple_keypoint.detect import build_parser, check_args, run
from simple_keypoint.sources import draw_tracks
from simple_keypoint.tracking import TrackOptions, add_track_options, track_options

__all__ = ["draw_tracks", "main", "parse_args"]  # draw_tracks stays importable from here, as before


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """detect's options (without --track) and the tracker's; ``args.tracking`` holds the TrackOptions."""
    p = build_parser("track", __doc__ or "",
                     f"tracks start from detections at or above this score, 0 to 1 (default: {TrackOptions.conf})")
    add_track_options(p)
    p.add_argument("--track", action="store_true", help=argparse.SUPPRESS)  # accepted, as before; never listed
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.name = args.name or "track"
    check_args(p, args)
    try:
        args.tracking = track_options(args, args.conf)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args, tracking=args.tracking)


if __name__ == "__main__":
    sys.exit(main())
