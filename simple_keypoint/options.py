"""Command-line pieces every ``simple-keypoint`` subcommand shares: the ``--weights`` option, range-checked
numbers, and a help formatter that states each default once.

Kept free of torch so ``--help`` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from simple_keypoint.paths import DEFAULT_WEIGHTS, WEIGHTS_HELP


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help text does not already say its default, and never
    for ``None``/``False`` (an unset option or an off switch: "(default: None)" tells nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """:class:`HelpFormatter` keeping the description's and epilog's own line breaks (usage examples)."""


def number(kind: Callable[[str], float], low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting ``kind`` (int or float) values in [low, high] (``low_open``:
    (low, high]); a bad value is argparse's one-line error naming the option and the range."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            if high is None:
                raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {text}")
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


FRACTION = number(float, 0.0, 1.0)  # scores, thresholds, shares: [0, 1]


def add_weights_option(p: argparse.ArgumentParser, default: str | None = DEFAULT_WEIGHTS, help_text: str = WEIGHTS_HELP) -> None:
    """``--weights``: a shipped model's name or a file, resolved by :func:`simple_keypoint.paths.resolve_weights`."""
    p.add_argument("--weights", default=default, metavar="W", help=help_text)


__all__ = ["FRACTION", "HelpFormatter", "RawHelpFormatter", "add_weights_option", "number"]
