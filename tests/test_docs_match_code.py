"""The docs say what the code does (issue 27): every message docs/bad_inputs.md shows is printed by the
code for a made-up input of the kind its row describes, and every default docs/tracking.md states is
the one the tracker and its options use. A changed message or default fails here until the doc says
the same."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, free_port

torch = pytest.importorskip("torch")

from test_robustness_checkpoints import bad_checkpoints, tiny  # noqa: E402  (after the skip: they import torch)
from test_robustness_images import tiny_checkpoint, write_kinds  # noqa: E402
from test_robustness_training import make_dataset, make_messy_dataset, run_train  # noqa: E402

from simple_keypoint import tracking  # noqa: E402
from simple_keypoint.checkpoint import save_checkpoint  # noqa: E402

BAD_INPUTS = REPO / "docs" / "bad_inputs.md"
TRACKING = REPO / "docs" / "tracking.md"

# Shown in bad_inputs.md but printed by libraries, not by this project: nothing here can check them.
NOT_OURS = {"libpng error: IDAT: ...", "Corrupt JPEG data: 24 extraneous bytes before marker 0xd9", "[ WARN ]",
            "[tcp @ 0x...] Connection refused"}
# Printed only after a training epoch, with a visdom server, or for a 100-Mpixel image: checked against
# the code's own format strings instead (the runs themselves: tests/test_robustness_*.py).
FROM_FORMAT_STRINGS = {"resuming run/weights/last.pt after epoch 1 of 5", "too large (WxH pixels)",
                       "visdom: no server at http://127.0.0.1:PORT (ConnectionError); training without live plots",
                       "visdom: lost the server (ConnectionError); training goes on without live plots"}


# --- reading the docs --------------------------------------------------------------------------------

def table_rows(text: str) -> Iterator[tuple[str, list[str]]]:
    """(section heading, cells) of every table body row outside code blocks."""
    section, in_code = "", False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code:
            continue
        elif line.startswith("## "):
            section = line[3:]
        elif line.startswith("|") and not re.fullmatch(r"\|[\s|:-]*", line):
            yield section, [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def documented_messages(text: str) -> list[str]:
    """The messages a table shows in its result column: backticked, with a space in them (a file or
    option name alone is not a message). Table headers are left out by their plain words."""
    found = []
    for _, cells in table_rows(text):
        for span in re.findall(r"`([^`]+)`", cells[-1]):
            if " " in span and not span.startswith("--"):
                found.append(span)
    return found


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```\n(.*?)^```$", text, re.S | re.M)


def as_pattern(documented: str) -> re.Pattern[str]:
    """A documented message as a pattern: an ellipsis stands for text the doc leaves out, a time in
    ms for whatever this machine took."""
    pattern = re.escape(documented)
    pattern = re.sub(r"(?:…|\\\.\\\.\\\.)", ".*?", pattern)
    pattern = re.sub(r"\d+(?:\\\.\d+)?\\ ms\b", r"[0-9.]+\\ ms", pattern)
    return re.compile(pattern)


def format_strings() -> list[re.Pattern[str]]:
    """Every string constant and f-string of the package as a pattern (a replacement field matches anything)."""
    patterns = []
    for path in (REPO / "simple_keypoint").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.JoinedStr):
                parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in node.values]
                patterns.append(re.compile("".join(parts)))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 10:
                patterns.append(re.compile(re.escape(node.value)))
    return patterns


# --- what the code prints for each kind of bad input --------------------------------------------------

def captured(run: Callable[[], object]) -> str:
    """stdout and stderr of ``run()`` in this process, and a raised error as ``Type: message``;
    argparse's exit is caught too."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            run()
        except SystemExit:
            pass
        except Exception as e:  # noqa: BLE001  (the message is what is compared)
            print(f"{type(e).__name__}: {e}")
    return out.getvalue()


def label_messages() -> list[str]:
    from simple_keypoint.labels import format_labels, read_labels

    files = [b"", "²\n".encode(), b"2\n0.5 0.5\n", b"1\n0.5 0.5\n0.5 0.5\n", b"1\n0.5\n", b"1\n1.5 0.5\n",
             b"1\n0,5 0.5\n", b"1\nnan 0.5\n", b"1\x0b0.5 0.5\n", b"9" * 5000 + b"\n", b"\xff\xfe1\n"]
    printed = []
    for data in files:
        Path("a.txt").write_bytes(data)
        printed.append(captured(lambda: read_labels(Path("a.txt"))))
    printed.append(captured(lambda: format_labels(np.array([[1.5, 0.5]]))))
    return printed


def image_messages() -> list[str]:
    from simple_keypoint.images import read_image

    good = (REPO / "data" / "test" / "images").glob("*.png").__next__().read_bytes()
    printed = []
    for folder, name, data in (("t1", "x.png", good[: len(good) // 2]), ("t2", "x.jpg", b""),
                               ("t3", "x.jpg", b"this is not an image\n")):
        Path(folder).mkdir()
        (Path(folder) / name).write_bytes(data)
        printed.append(captured(lambda: read_image(Path(folder) / name)))  # noqa: B023  (called at once)
    return printed


def detect_messages() -> list[str]:
    from simple_keypoint import detect

    tiny_checkpoint(Path("w.pt"))
    write_kinds(Path("imgs"))
    one = (REPO / "data" / "test" / "images").glob("*.png").__next__().read_bytes()
    for folder in ("good/images", "outx/overlays"):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "a.png").write_bytes(one)
    Path("afile").write_text("a file, not a folder")
    Path("empty/images").mkdir(parents=True)
    runs = [["--source", "imgs", "--out", "out"],
            ["--source", "good/images", "--out", "good/images"],
            ["--source", "outx/overlays", "--out", "outx"],
            ["--source", "good/images", "--out", "afile"],
            ["--source", "empty/images", "--out", "o1"],
            ["--source", "nothere", "--out", "o2"],
            ["--source", "good/images", "--out", "o3", "--conf", "2"],
            ["--source", f"http://127.0.0.1:{free_port()}/clip.mp4", "--retries", "0", "--out", "o4"]]
    # Hand labels in the output folder (refused, then replaced with --exist-ok); a source matching nothing.
    for folder in ("ds/images", "ds/labels"):
        Path(folder).mkdir(parents=True)
    for k in (1, 2, 3):
        (Path("ds/images") / f"Misc_{k}.png").write_bytes(one)
        (Path("ds/labels") / f"Misc_{k}.txt").write_text("1\n0.5 0.5\n")
    runs += [["--source", "ds/images", "--out", "ds"], ["--source", "ds/images", "--out", "ds", "--exist-ok"],
             ["--source", "good/images", "b/*.png", "--out", "o6"], ["--source", cut_video(Path("clip.avi")), "--out", "o7"]]
    printed = [captured(lambda argv=argv: detect.main(["--weights", "w.pt", "--quiet", *argv])) for argv in runs]
    printed.append(captured(lambda: detect.main(["--weights", "heatmap_x", "--source", "good/images", "--out", "o5"])))
    return printed


def cut_video(path: Path, frames: int = 30) -> str:
    """An AVI whose header states ``frames`` frames, cut off half-way."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        frame = np.full((48, 64, 3), 20, np.uint8)
        frame[20:23, 2 * i:2 * i + 3] = 255
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def weights_messages() -> list[str]:
    from simple_keypoint.checkpoint import load_checkpoint
    from simple_keypoint.predict import load_model

    names = bad_checkpoints(Path("ck"))
    printed = [captured(lambda name=name: load_model(Path("ck") / name)) for name in names]
    Path("r2/weights").mkdir(parents=True)
    save_checkpoint(Path("r2/weights/last.pt"), tiny("regression"))
    printed.append(captured(lambda: load_checkpoint(Path("r2/weights/last.pt"), method="heatmap")))
    return printed


def evaluate_messages() -> list[str]:
    from simple_keypoint import evaluate

    return [captured(lambda data=data: evaluate.main(["--weights", "w.pt", "--data", data])) for data in ("empty", "nirgends")]


def training_messages() -> list[str]:
    from simple_keypoint.training import TrainingInterrupted, command_line

    make_messy_dataset(Path("messy"))
    make_dataset(Path("data"), 0)
    Path("data/images/bad.png").write_bytes(b"not an image")
    Path("data/labels/bad.txt").write_text("1\n0.5 0.5\n")
    Path("junk.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    Path("run/weights").mkdir(parents=True)
    save_checkpoint(Path("run/weights/last.pt"), {**tiny(), "train_args": {"epochs": 5}, "optimizer": {}, "epoch": 5})
    printed = []
    for argv in (["--data", "messy", "--epochs", "1", "--out", "runs/messy"], ["--data", "data"], ["--data", "empty"],
                 ["--data", "nowhere"], ["--data", "messy", "--resume", "junk.pt"], ["--resume", "run/weights/last.pt"]):
        result = run_train("heatmap", *argv)
        printed.append(result.stdout + result.stderr)

    def interrupted(last: Path) -> Callable[[], None]:
        def run() -> None:
            raise TrainingInterrupted(last)
        return run

    printed.append(captured(lambda: command_line(interrupted(Path("run/weights/last.pt")))))
    printed.append(captured(lambda: command_line(interrupted(Path("gone/weights/last.pt")))))
    return printed


def existing_output_messages() -> list[str]:
    """Run after detect_messages (its w.pt and good/images)."""
    import cv2

    from landmark_annotation.__main__ import main as label
    from simple_keypoint import convert, export
    from simple_keypoint.labels import write_labels

    for name in ("notes.onnx", "notes.json"):
        Path(name).write_text("the user's own file")
    dataset = Path("set")
    for folder in ("images", "masks", "labels"):
        (dataset / folder).mkdir(parents=True)
    image, mask = np.full((12, 16), 20, np.uint8), np.zeros((12, 16), np.uint8)
    image[5, 7] = mask[5, 7] = 255
    cv2.imwrite(str(dataset / "images" / "a.png"), image)
    cv2.imwrite(str(dataset / "masks" / "a.png"), mask)
    write_labels(dataset / "labels" / "a.txt", np.empty((0, 2)))
    Path("lm").mkdir()
    Path("lm/a.json").write_text("{}")
    return [captured(lambda: export.main(["--weights", "w.pt", "--out", "notes.onnx"])),
            captured(lambda: convert.main(["to-coco", "set", "--out", "notes.json"])),
            captured(lambda: convert.main(["to-labelme", "set", "--out", "lm"])),
            captured(lambda: convert.main(["masks", "set", "--quiet"])),
            captured(lambda: label(["good/images", "--save-coco", "notes.json"]))]


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Everything the code printed for the made-up bad inputs, run where paths are as short as the doc's."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        texts = [*label_messages(), *image_messages(), *detect_messages(), *existing_output_messages(),
                 *weights_messages(), *evaluate_messages(), *training_messages()]
    return "\n".join(texts)


# --- the tests ------------------------------------------------------------------------------------------

def test_the_docs_table_reader_finds_the_messages() -> None:
    """The reader itself: a changed table layout must not make the checks below vacuous."""
    messages = documented_messages(BAD_INPUTS.read_text("utf-8"))
    assert len(messages) >= 40
    assert "a.txt: not a text file (not UTF-8)" in messages and "error: nothere: no such file or folder" in messages
    assert set(NOT_OURS | FROM_FORMAT_STRINGS) <= set(messages)  # no stale exemptions


@pytest.mark.parametrize("documented", documented_messages(BAD_INPUTS.read_text("utf-8")))
def test_each_documented_message_is_what_the_code_prints(documented: str, printed: str) -> None:
    if documented in NOT_OURS:
        return
    if documented in FROM_FORMAT_STRINGS:
        assert any(pattern.fullmatch(documented) for pattern in format_strings()), documented
        return
    assert as_pattern(documented).search(printed), f"docs/bad_inputs.md shows {documented!r}; the code printed:\n{printed}"


@pytest.mark.parametrize("block", code_blocks(BAD_INPUTS.read_text("utf-8")))
def test_each_documented_output_block_is_what_the_code_prints(block: str, printed: str) -> None:
    for line in block.splitlines():
        assert re.search(f"^{as_pattern(line).pattern}$", printed, re.M), \
            f"docs/bad_inputs.md shows the line {line!r}; the code printed:\n{printed}"


# --- docs/tracking.md: the defaults -------------------------------------------------------------------

def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text)]


def test_the_tracking_defaults_table_is_what_the_code_uses() -> None:
    from simple_keypoint.track import parse_args

    args = parse_args([])
    options, shift = args.tracking, tracking.SceneShift()
    used = {"--conf": [options.conf], "--keep-conf": [options.keep_conf],
            "--confirm": [options.confirm_hits, options.confirm_window], "--max-missed": [options.max_missed],
            "--gate": [options.gate], "--min-move": [options.min_move], "--trail": [options.trail],
            "TrackOptions.border": [options.border], "TrackOptions.max_points": [options.max_points],
            "TrackOptions.jitter": [options.jitter], "MOVE_WINDOW": [tracking.MOVE_WINDOW],
            "MOTION_POINTS": [tracking.MOTION_POINTS], "MOTION_Z": [tracking.MOTION_Z],
            "SETTLE_WINDOW": [tracking.SETTLE_WINDOW], "--clear-sky": [options.clear_sky],
            "SceneShift.side": [shift.side]}
    rows = [cells for section, cells in table_rows(TRACKING.read_text("utf-8")) if section.startswith("Defaults")
            and len(cells) == 3 and cells[0] != "setting"]
    seen = set()
    for name, default, _ in rows:
        key = re.findall(r"`([^`]+)`", name)[0].split()[0]
        assert key in used, f"docs/tracking.md's defaults table names {key}, which this test does not know"
        assert numbers(default) == pytest.approx(used[key]), f"docs/tracking.md: {key} {default}, the code: {used[key]}"
        seen.add(key)
    assert seen == set(used), f"not in docs/tracking.md's defaults table: {sorted(set(used) - seen)}"


@pytest.mark.parametrize("prose, value", [
    (r"stood still for (\d+) frames ends", tracking.SETTLE_WINDOW),
    (r"detections of the last (\d+) frames", tracking.MOVE_WINDOW),
    (r"of the last \d+ frames \(at least (\d+)\)", tracking.MOTION_POINTS),
    (r"speed stands (\d+) standard errors", tracking.MOTION_Z),
    (r"within `border` \((\d+) px\)", tracking.TrackOptions.border),
    (r"refused within (\d+) px of the edge", tracking.TrackOptions.border),
])
def test_the_numbers_in_tracking_md_prose_are_the_codes(prose: str, value: float) -> None:
    found = re.findall(prose, " ".join(TRACKING.read_text("utf-8").split()))
    assert found, f"docs/tracking.md no longer says {prose!r}: update this test with the doc"
    assert all(float(n) == value for n in found), f"docs/tracking.md: {prose} says {found}, the code uses {value}"

