"""The registry of methods, and rebuilding a method's net from a checkpoint.

A checkpoint or ONNX file names its method; :func:`get_method` turns the name into the
:class:`~simple_keypoint.method.Method` that knows the rest. A new method is one folder and one
:func:`register` call (the built-in ones are registered below).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from simple_keypoint.checkpoint import CheckpointError
from simple_keypoint.heatmap.method import HEATMAP
from simple_keypoint.method import DecodeSettings, Method
from simple_keypoint.regression.method import REGRESSION

_METHODS: dict[str, Method] = {}


class UnknownMethodError(CheckpointError):
    """A method name that no registered method has."""


def register(method: Method) -> Method:
    """Make ``method`` known by its name (replacing one of the same name); returns it."""
    _METHODS[method.name] = method
    return method


def method_names() -> list[str]:
    return sorted(_METHODS)


def get_method(name: object, path: str | os.PathLike = "<checkpoint>") -> Method:
    """The registered method called ``name``; :class:`UnknownMethodError` naming ``path`` if none is."""
    if not isinstance(name, str) or name not in _METHODS:
        raise UnknownMethodError(f"{path}: unknown method {name!r}")
    return _METHODS[name]


def build_model(method: str | Method, model_args: dict[str, Any]) -> torch.nn.Module:
    """A new, untrained net of ``method`` (a name or a :class:`Method`)."""
    return (method if isinstance(method, Method) else get_method(method)).build(model_args)


def net_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike = "<checkpoint>") -> tuple[Method, torch.nn.Module]:
    """The checkpoint's method and its net with the stored weights; :class:`CheckpointError` naming
    ``path`` if they do not fit."""
    method = get_method(checkpoint["method"], path)
    model_args, state = checkpoint.get("model_args", {}), checkpoint["model_state"]
    try:
        net = method.build(model_args)
    except (TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad {method.name} model settings {model_args!r} ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: model_state is not a set of named tensors")
    # Compare before loading: load_state_dict's own error is a many-line list of parameter names.
    expected = net.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        example = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}" if wrong
                   else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise CheckpointError(f"{path}: weights do not fit the {method.name} architecture {model_args}: "
                              f"{len(wrong)} wrong-shaped, {len(missing)} missing, {len(unexpected)} unexpected "
                              f"tensor(s), e.g. {example}")
    net.load_state_dict(state)
    return method, net


def decode_settings(decode: Any, path: str | os.PathLike = "<checkpoint>") -> DecodeSettings:
    """A checkpoint's (or ONNX file's) ``decode`` dict over the defaults; :class:`CheckpointError` if malformed."""
    try:
        return DecodeSettings(**(decode or {}))
    except TypeError as e:
        raise CheckpointError(f"{path}: bad decode settings {decode!r} ({e})") from None


for _builtin in (HEATMAP, REGRESSION):
    register(_builtin)
