"""detect on videos, webcams and streams: an annotated video and one CSV of points out, --vid-stride,
--save-frames, a stream that drops (reconnected, or reported), flat memory over thousands of
frames, and the reader / model / writer threads overlapping."""

from __future__ import annotations

import csv
import functools
import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PATIENCE, REPO, decoded_frames, run_python

from simple_keypoint import detect as detect_module
from simple_keypoint import sources as sources_module
from simple_keypoint.detect import DetectOptions, Source, detect, list_sources, main
from simple_keypoint.images import read_image
from simple_keypoint.paths import shipped_weights
from simple_keypoint.predict import load_model

FPS = 5.0


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    h, w = frames[0].shape[:2]
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert video.isOpened()
    for frame in frames:
        video.write(frame)
    video.release()
    return path


@pytest.fixture(scope="module")
def model():
    return load_model(shipped_weights("heatmap"), device="cpu")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """6 frames of a real SIRST image, shifted a little each frame (even sizes: MJPG rounds odd ones down)."""
    image = read_image(REPO / "data" / "test" / "images" / "Misc_15.png")[:200, :320]
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[..., :3]
    folder = tmp_path / "in"
    folder.mkdir()
    return write_video(folder / "clip.avi", [np.roll(image, 3 * i, axis=1) for i in range(6)])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_video_in_gives_a_video_and_a_csv(clip: Path, tmp_path: Path, model, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["--source", str(clip), "--out", str(out), "--conf", "0", "--max-points", "2", "--vid-stride", "2", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "3 frame(s) of 1 video(s), 6 point(s) found" in printed and f"wrote {out / 'clip.mp4'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.mp4"]  # no per-frame files unless asked
    video = cv2.VideoCapture(str(out / "clip.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 2)
    written = decoded_frames(out / "clip.mp4")
    assert len(written) == 3 and written[0].shape == (200, 320, 3)
    rows = read_csv(out / "clip.csv")
    assert list(rows[0]) == ["frame", "time_s", "u", "v", "score"]
    frames = decoded_frames(clip)
    for number in (0, 2, 4):
        expected = model.predict(frames[number], conf=0.0, max_points=2)
        got = [r for r in rows if r["frame"] == str(number)]
        assert [float(r["time_s"]) for r in got] == [pytest.approx(number / FPS)] * 2
        np.testing.assert_allclose([[float(r[k]) for k in ("u", "v", "score")] for r in got], expected, atol=1e-3)
    assert {r["frame"] for r in rows} == {"0", "2", "4"}


def test_save_frames_and_a_frame_without_points(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["--source", str(clip), "--out", str(out), "--conf", "1", "--save-frames", "--quiet"]) == 0
    assert "6 frame(s) of 1 video(s), 0 point(s) found" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"clip_{i:06d}.txt" for i in range(6)]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"clip_{i:06d}.jpg" for i in range(6)]
    assert (out / "labels" / "clip_000003.txt").read_text() == "0\n"
    # Every frame appears in the CSV, with empty u, v, score when nothing was found.
    assert [(r["frame"], r["u"], r["v"], r["score"]) for r in read_csv(out / "clip.csv")] == [(str(i), "", "", "") for i in range(6)]


def test_sources_kinds(tmp_path: Path, clip: Path) -> None:
    assert list_sources("0") == [Source("camera", "0")]
    assert list_sources("rtsp://192.0.2.1:554/live") == [Source("url", "rtsp://192.0.2.1:554/live")]
    assert list_sources("HTTPS://example.org/a.mjpg")[0].kind == "url"
    assert list_sources(str(clip)) == [Source("video", str(clip))]
    assert list_sources(str(clip.parent)) == [Source("video", str(clip))]
    assert Source("url", "rtsp://cam.local:554/live/ch 1").stem == "stream_cam.local_554_live_ch_1"
    (tmp_path / "0").mkdir()  # a folder named 0 is a folder, not a webcam
    write_video(tmp_path / "0" / "v.mp4", [np.zeros((16, 16, 3), np.uint8)])
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert list_sources("0") == [Source("video", str(Path("0") / "v.mp4"))]
    finally:
        os.chdir(cwd)


def test_no_webcam_is_one_line(tmp_path: Path) -> None:
    result = run_python(REPO / "detect.py", "--source", "7", "--out", tmp_path / "o", "--quiet", cwd=tmp_path, timeout=PATIENCE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "  failed: camera 7: cannot open camera\n" in result.stdout and "Traceback" not in result.stderr


class FakeCamera:
    """A webcam that gives ``frames`` frames and then stops delivering."""

    def __init__(self, frames: int):
        self.left = frames

    def isOpened(self) -> bool:  # noqa: N802  (OpenCV's name)
        return True

    def get(self, prop: int) -> float:
        return 0.0  # webcams often report no fps and no frame count

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.left -= 1
        return (True, np.full((24, 32, 3), 40, np.uint8)) if self.left >= 0 else (False, None)

    def grab(self) -> bool:
        return self.read()[0]

    def release(self) -> None:
        pass


def test_a_camera_that_stops_is_reported_and_keeps_its_video(tmp_path: Path, model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources_module, "open_capture", lambda source: FakeCamera(5))
    report = detect(model, [Source("camera", "0")], tmp_path, DetectOptions())
    assert report.frames == 5
    assert report.failures == ["camera 0: stopped delivering frames after 5 frame(s)"]
    assert report.videos == [tmp_path / "camera0.mp4", tmp_path / "camera0.csv"]
    assert len(decoded_frames(tmp_path / "camera0.mp4")) == 5
    rows = read_csv(tmp_path / "camera0.csv")
    assert [r["frame"] for r in rows] == ["0", "1", "2", "3", "4"]
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times) and times[0] < 5  # wall-clock seconds since the start for a live source
    assert not list(tmp_path.glob(".*"))  # no temporary files left


class FlakyServer(http.server.BaseHTTPRequestHandler):
    """Serves one video; the first connection breaks off halfway. ``later`` says what the next ones
    do: serve it whole (up), refuse (down) or break off at the same place (truncated)."""

    def __init__(self, data: bytes, later: str, log: list[str], *args, **kwargs):
        self.data, self.later, self.log = data, later, log
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        self.log.append(self.path)
        if len(self.log) > 1 and self.later == "down":
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/x-msvideo")
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        self.wfile.write(self.data[: len(self.data) // 2] if len(self.log) == 1 or self.later == "truncated" else self.data)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("later", ["up", "down", "truncated"])
def test_a_url_that_drops_is_reconnected_or_reported(clip: Path, tmp_path: Path, model, later: str) -> None:
    log: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(FlakyServer, clip.read_bytes(), later, log))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
    try:
        report = detect(model, list_sources(url), tmp_path, DetectOptions(conf=0.0, max_points=1, retries=2, retry_delay=0.05))
    finally:
        server.shutdown()
        server.server_close()
    name = Source("url", url).stem
    frames = [int(r["frame"]) for r in read_csv(tmp_path / f"{name}.csv")]
    if later == "up":
        assert report.failures == [] and len(report.warnings) == 1
        assert report.warnings[0].startswith(f"{url}: stream dropped after ") and report.warnings[0].endswith(", reconnected")
        assert frames == list(range(6)) and report.frames == 6  # each frame once: the replayed ones are skipped
        assert len(log) == 2
    else:
        dropped = report.frames
        assert 0 < dropped < 6
        assert report.failures == [f"{url}: stream dropped after {dropped} frame(s); 2 reconnection attempt(s) without a frame failed"]
        assert frames == list(range(dropped))  # what came before the drop is kept
        assert len(log) == 3
    assert len(decoded_frames(tmp_path / f"{name}.mp4")) == len(frames)


def test_a_url_that_never_opens(tmp_path: Path, model) -> None:
    report = detect(model, [Source("url", "http://127.0.0.1:9/none.avi")], tmp_path, DetectOptions(retries=1, retry_delay=0.01))
    assert report.failures == ["http://127.0.0.1:9/none.avi: cannot open video (tried 2 times)"] and report.frames == 0
    assert list(tmp_path.iterdir()) == []


MEMORY_SCRIPT = """
import resource, sys
from pathlib import Path
import torch
from simple_keypoint.detect import DetectOptions, detect, list_sources
from simple_keypoint.paths import shipped_weights
from simple_keypoint.predict import load_model
from simple_keypoint.tracking import TrackOptions

torch.set_num_threads(1)  # as detect does by default
model = load_model(shipped_weights("heatmap"), device="cpu")
peaks = []
for name, track in (("short.avi", None), ("long.avi", None), ("long.avi", TrackOptions(conf=0.0, keep_conf=0.0))):
    out = Path(sys.argv[1]) / ("out_" + name + ("_track" if track else ""))
    out.mkdir()
    report = detect(model, list_sources(str(Path(sys.argv[1]) / name)), out, DetectOptions(conf=0.0, max_points=3, track=track))
    assert report.frames and not report.failures, report.failures
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    print(name, "tracked" if track else "", report.frames)
print("peak_kib", *peaks)
"""


def test_memory_stays_flat_over_a_long_video(tmp_path: Path) -> None:
    """Peak RSS after 2000 frames is within a few MB of the peak after 200: nothing per frame is kept,
    and tracking the 2000 frames adds no more. (Kept overlays, heatmaps and frames of this size would
    add about 50 KB per frame.)"""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
    frames = []
    for i in range(2000):
        frame = base.copy()
        frame[10 + i % 28, 10 + (i * 7) % 44] = 250
        frames.append(frame)
    write_video(tmp_path / "short.avi", frames[:200])
    write_video(tmp_path / "long.avi", frames)
    del frames
    result = run_python("-c", MEMORY_SCRIPT, tmp_path, timeout=PATIENCE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "long.avi  2000" in result.stdout and "long.avi tracked 2000" in result.stdout
    short, long, tracked = map(int, result.stdout.split("peak_kib")[1].split())
    assert long - short < 20_000, f"peak RSS grew by {(long - short) / 1024:.1f} MiB over 1800 more frames"
    assert tracked - long < 20_000, f"peak RSS grew by {(tracked - long) / 1024:.1f} MiB tracking 2000 frames"


def test_reading_inference_and_writing_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stage takes at least 30 ms a frame here; while one frame is inferred, another is being
    read or written (checked from when each stage ran, not from the total time: a busy machine
    stretches that)."""
    stage = 0.03
    ran: dict[str, list[tuple[float, float]]] = {"read": [], "infer": [], "write": []}

    def timed(name: str) -> None:
        started = time.monotonic()
        time.sleep(stage)
        ran[name].append((started, time.monotonic()))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(16):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), np.full((16, 16), i, np.uint8))

    class SlowModel:
        conf = 0.5

        def predict_with_heatmap(self, image, conf=None, max_points=None):
            timed("infer")
            return np.array([[3.0, 4.0, 0.9]]), None

    real_read, real_draw = detect_module.read_image, detect_module.draw_overlay

    def slow_read(path):
        timed("read")
        return real_read(path)

    def slow_draw(*args, **kwargs):
        timed("write")
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(detect_module, "read_image", slow_read)
    monkeypatch.setattr(detect_module, "draw_overlay", slow_draw)
    for sub in ("overlays", "labels"):
        (tmp_path / "out" / sub).mkdir(parents=True)
    report = detect(SlowModel(), list_sources(str(folder)), tmp_path / "out", DetectOptions())
    assert report.frames == 16 and report.failures == []

    def overlapped(a: str, b: str) -> bool:
        return any(s1 < e2 and s2 < e1 for s1, e1 in ran[a] for s2, e2 in ran[b])

    assert overlapped("read", "infer") and overlapped("infer", "write"), f"the stages ran one after another: {ran}"
    assert report.busy["read"] >= 16 * stage and report.busy["write"] >= 16 * stage  # each stage was timed


def test_ctrl_c_on_a_webcam_keeps_the_video_so_far(tmp_path: Path, model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources_module, "open_capture", lambda source: FakeCamera(10**9))  # never ends by itself
    calls = []
    predict = model.predict_with_heatmap

    def interrupted_after_three(image, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return predict(image, **kwargs)

    monkeypatch.setattr(model, "predict_with_heatmap", interrupted_after_three)
    report = detect(model, [Source("camera", "0")], tmp_path, DetectOptions())  # returns: did not wait for the camera
    assert report.interrupted and report.failures == [] and report.frames == 3
    assert len(decoded_frames(tmp_path / "camera0.mp4")) == 3
    assert [r["frame"] for r in read_csv(tmp_path / "camera0.csv")] == ["0", "1", "2"]
    assert not [t for t in threading.enumerate() if t.name.startswith("detect-")]  # no thread left running
