"""The ``simple-keypoint`` command: one front door to the project's entry points.

Each subcommand hands the rest of the command line to the same ``main(argv)`` that ``python detect.py``
and ``python -m ...`` run, so both spellings behave identically. Modules load only when their
subcommand is used (torch takes seconds to import).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from simple_keypoint import __version__

# subcommand -> (module, one-line help); every module has main(argv) -> exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("simple_keypoint.detect", "run a model on images, folders, globs, videos, a webcam or a stream"),
    "track": ("simple_keypoint.track", "track points over time in a video, stream, webcam or folder of frames"),
    "train": ("", "train a model: simple-keypoint train {heatmap,regression} [options]"),
    "evaluate": ("simple_keypoint.evaluate", "score a model on labelled folders (Pd, false alarms, AP)"),
    "export": ("simple_keypoint.export", "export a checkpoint to ONNX"),
    "threshold": ("simple_keypoint.threshold", "pick a checkpoint's threshold again on its validation split"),
    "convert": ("simple_keypoint.convert", "convert labels from other formats"),
    "label": ("landmark_annotation.__main__", "the click-to-label desktop tool"),
    "cache": ("simple_keypoint.cache", "show where the ONNX cache is and its size; --clear empties it"),
}


def trainers() -> dict[str, str]:
    """Method name -> its training module: ``train.py`` in the package of its registered Method
    (a new method is one folder and one register call, so the command learns it from the registry)."""
    from simple_keypoint.methods import get_method, method_names

    return {name: f"{type(get_method(name)).__module__.rsplit('.', 1)[0]}.train" for name in method_names()}


class CommandUnavailable(RuntimeError):
    """A subcommand whose module is not part of this installation."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: simple-keypoint COMMAND [options]   (simple-keypoint COMMAND --help for its options)",
             "", "Find tiny point targets in infrared images.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help     show this message", "  --version      print the version"]
    return "\n".join(lines)


def load_main(module: str) -> Callable[[list[str] | None], int]:
    """``module.main``; raises CommandUnavailable when the module itself is missing (not one of its imports)."""
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as e:
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            raise CommandUnavailable(f"{module} is not part of simple-keypoint {__version__}") from None
        raise


def as_track_arguments(argv: list[str]) -> list[str] | None:
    """``detect --track ARGS`` is ``track ARGS``: the arguments for track, or None without ``--track``
    (or an abbreviation argparse would take for it, ``--tr`` on). Handed over here, by name, so
    detect never imports track: track builds on detect."""
    flags = [a for a in argv if len(a) >= len("--tr") and "--track".startswith(a)]
    return [a for a in argv if a not in flags] if flags else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"simple-keypoint {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"simple-keypoint: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}\n"
              "see simple-keypoint --help", file=sys.stderr)
        return 2
    if command == "detect" and (track_arguments := as_track_arguments(rest)) is not None:
        command, rest = "track", track_arguments
    module = COMMANDS[command][0]
    if command == "train":
        methods = trainers()
        if not rest or rest[0] not in methods:
            text = f"usage: simple-keypoint train {{{','.join(methods)}}} [options]   (... METHOD --help for its options)"
            if rest and rest[0] in ("-h", "--help"):
                print(text)
                return 0
            given = f"unknown method {rest[0]!r}" if rest else "a method is needed"
            print(f"simple-keypoint train: error: {given}; choose from {', '.join(methods)}\n"
                  "see simple-keypoint train --help", file=sys.stderr)
            return 2
        module, rest = methods[rest[0]], rest[1:]
    try:
        entry = load_main(module)
    except CommandUnavailable as e:
        print(f"error: simple-keypoint {command} is not available: {e}", file=sys.stderr)
        return 2
    return entry(rest)


if __name__ == "__main__":
    sys.exit(main())
