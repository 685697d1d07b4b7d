"""Command-line pieces every ``simple-keypoint`` subcommand shares: the parser (a usage error is one line
naming the option, then where to find help), the ``--weights`` option, range-checked numbers, and a
help formatter that states each default once.

Kept free of torch so ``--help`` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

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


def _shown(text: str) -> str:
    """A command-line value as typed, quoted only where the quotes are needed to see it."""
    return text if text and not any(c.isspace() for c in text) else repr(text)


def number(kind: Callable[[str], float], low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting ``kind`` (int or float) values in [low, high] (``low_open``:
    (low, high]). A bad value raises ArgumentTypeError starting with the value (``1.5 is not in [0, 1]``),
    which :class:`Parser` puts after the option's name."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a finite number")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            if high is None:
                raise argparse.ArgumentTypeError(f"{_shown(text)} is not {'>' if low_open else '>='} {low:g}")
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not in {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def option_name(action: argparse.Action) -> str:
    """How the user spells an option: its long form (``--conf``), or a positional's metavar."""
    if action.option_strings:
        return max(action.option_strings, key=lambda name: (name.startswith("--"), len(name)))
    metavar = action.metavar if isinstance(action.metavar, str) else None
    return metavar or action.dest.upper()


class Parser(argparse.ArgumentParser):
    """The ArgumentParser of every command. A usage error is the line ``PROG: error: --conf 1.5 is not
    in [0, 1]`` (the option first) and the line ``see PROG --help``, exit 2; argparse's own usage
    block above it pushed the one line that matters out of sight. Subcommand parsers inherit it."""

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as e:
            kind = {int: "an integer", float: "a number"}.get(action.type)  # plain int/float: argparse's "invalid int value"
            detail = e.message
            if detail.startswith("invalid "):
                detail = f"{_shown(arg_string)} is not {kind or 'a valid ' + getattr(action.type, '__name__', 'value')}"
            raise argparse.ArgumentError(None, f"{option_name(action)} {detail}") from None

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(None, f"{option_name(action)} {_shown(str(value))} is not one of: {choices}")

    def error(self, message: str) -> NoReturn:
        # argparse's "argument -c/--conf: expected one argument" -> "--conf: expected one argument"
        found = re.fullmatch(r"argument (\S+): (.*)", message, re.S)
        if found:
            message = f"{found[1].split('/')[-1]}: {found[2]}"
        self.exit(2, f"{self.prog}: error: {message}\nsee {self.prog} --help\n")


FRACTION = number(float, 0.0, 1.0)  # scores, thresholds, shares: [0, 1]


def add_weights_option(p: argparse.ArgumentParser, default: str | None = DEFAULT_WEIGHTS, help_text: str = WEIGHTS_HELP) -> None:
    """``--weights``: a shipped model's name or a file, resolved by :func:`simple_keypoint.paths.resolve_weights`."""
    p.add_argument("--weights", default=default, metavar="W", help=help_text)


__all__ = ["FRACTION", "HelpFormatter", "Parser", "RawHelpFormatter", "add_weights_option", "number", "option_name"]
