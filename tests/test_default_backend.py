"""The default path: on a CPU, ``load_model("x.pt")`` runs through onnxruntime on a cached export
that gives PyTorch's points; the cache is keyed by content, never stale, and survives corrupt
entries and unwritable folders; PyTorch is chosen on CUDA, on request, or without onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from simple_keypoint import __version__, onnx_cache, predict
from simple_keypoint.checkpoint import VERSION_KEY, load_checkpoint, save_checkpoint
from simple_keypoint.export import OnnxExportError
from simple_keypoint.images import load_gray
from simple_keypoint.predict import Localizer, OnnxLocalizer, default_backend, load_model

ROOT = Path(__file__).resolve().parents[1]
TEST_IMAGES = sorted((ROOT / "data/test/images").glob("*.png"))
SHIPPED = {method: ROOT / "weights" / f"{method}.pt" for method in ("heatmap", "regression")}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own empty cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(folder))
    return folder


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.onnx")) if folder.is_dir() else []


def copy_checkpoint(tmp_path: Path, method: str = "heatmap", **changes: object) -> Path:
    checkpoint = load_checkpoint(SHIPPED[method]) | changes
    path = tmp_path / f"{method}.pt"
    save_checkpoint(path, checkpoint)
    return path


def test_default_is_onnxruntime_on_a_cpu(cache: Path) -> None:
    assert not torch.cuda.is_available()  # this machine and CI: no GPU
    assert default_backend() == default_backend("cpu") == "onnx"
    for path in SHIPPED.values():
        model = load_model(path)
        assert isinstance(model, OnnxLocalizer) and model.backend == "onnx", path
        assert load_model(path, device="cpu").backend == "onnx"
        assert load_model(path, backend="auto").backend == "onnx"
    assert len(entries(cache)) == 2  # one export per checkpoint, reused by the later loads


def test_pytorch_when_asked_on_cuda_or_without_onnxruntime(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    model = load_model(SHIPPED["heatmap"], backend="torch")
    assert type(model) is Localizer and model.backend == "torch" and model.net is not None
    assert not entries(cache)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_backend() == "torch" and default_backend("cuda:0") == "torch"
    assert default_backend("cpu") == "onnx"
    monkeypatch.undo()
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(cache))

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    assert default_backend("cpu") == "torch"
    assert type(load_model(SHIPPED["heatmap"])) is Localizer
    with pytest.raises(ValueError, match="unknown backend"):
        load_model(SHIPPED["heatmap"], backend="tensorrt")


def untied(points: np.ndarray) -> np.ndarray:
    """Points whose score no other point shares within 1e-5: a flat run of equal maxima (a border row)
    keeps an arbitrary subset of its pixels, different from backend to backend."""
    gaps = np.abs(points[:, 2][:, None] - points[:, 2][None, :]) <= 1e-5
    return gaps.sum(axis=1) == 1


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_default_path_gives_pytorchs_points_on_sirst_test(method: str) -> None:
    """Same points within 0.01 px (0.05 px for weak peaks under 0.2) and scores within 1e-4 as PyTorch,
    on the shipped weights: every
    SIRST test image for the default method, every third for regression (one point per image)."""
    assert len(TEST_IMAGES) > 50
    images = TEST_IMAGES if method == "heatmap" else TEST_IMAGES[::3]
    by_torch, by_default = load_model(SHIPPED[method], backend="torch"), load_model(SHIPPED[method])
    assert by_default.backend == "onnx" and by_default.conf == by_torch.conf
    compared = 0
    for path in images:
        gray = load_gray(path)
        # A low threshold compares many more points than the shipped one (weak peaks included).
        expected, got = by_torch.predict_standardised(gray, conf=0.05), by_default.predict_standardised(gray, conf=0.05)
        # A point scoring within 1e-4 of the threshold may fall on either side of it; where ties fill
        # the max_points slots, which of them survive (and what falls off the end) is rounding's choice.
        floor = 0.05
        if max(len(expected), len(got)) >= by_torch.max_points:
            floor = max(expected[:, 2].min(), got[:, 2].min())
        keep_expected, keep_got = (untied(expected) & (expected[:, 2] >= floor + 1e-4),
                                   untied(got) & (got[:, 2] >= floor + 1e-4))
        assert keep_expected.sum() == keep_got.sum(), path.name
        e, g = expected[keep_expected], got[keep_got]
        # Points in score order; two of near-equal score may swap, so pair each with its nearest.
        for point in e:
            nearest = g[np.argmin(np.hypot(*(g[:, :2] - point[:2]).T))]
            # A weak, flat peak's parabola vertex moves more with float32 rounding than a strong one's.
            tolerance = 0.01 if point[2] >= 0.2 else 0.05
            assert np.hypot(*(nearest[:2] - point[:2])) <= tolerance, (path.name, point, nearest)
            assert abs(nearest[2] - point[2]) <= 1e-4, (path.name, point, nearest)
        compared += len(e)
    assert compared >= len(images) * (0.9 if method == "regression" else 1)


def test_cache_is_keyed_by_content_and_never_stale(tmp_path: Path, cache: Path) -> None:
    path = copy_checkpoint(tmp_path)
    first = onnx_cache.cached_onnx(path)
    assert not first.hit and first.entry is not None and first.entry.parent == cache
    again = onnx_cache.cached_onnx(path)
    assert again.hit and again.entry == first.entry and again.model == first.model
    # The checkpoint rewritten in place (as threshold --write does): a new entry, the new setting used.
    save_checkpoint(path, load_checkpoint(path) | {"decode": {"conf": 0.77}})
    assert load_model(path).conf == pytest.approx(0.77)
    assert len(entries(cache)) == 2
    # Another package version (or opset) never reads this one's entries.
    stems = {e.stem for e in entries(cache)}
    assert all(f"-v{__version__}-opset17" in stem for stem in stems)
    assert onnx_cache.entry_stem("ab" * 32, 18) not in stems


def test_cache_records_versions_and_the_checkpoint_hash(tmp_path: Path) -> None:
    path = copy_checkpoint(tmp_path)
    assert load_checkpoint(path)[VERSION_KEY] == __version__
    cached = onnx_cache.cached_onnx(path)
    meta = {p.key: p.value for p in onnx.load_from_string(cached.model).metadata_props}
    assert meta["simple_keypoint_version"] == __version__
    assert meta["simple_keypoint_checkpoint_version"] == __version__
    record = json.loads(cached.entry.with_suffix(".json").read_text())
    assert meta["simple_keypoint_checkpoint_sha256"] == record["checkpoint_sha256"] == cached.entry.stem.split("-")[0]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_record", "bad_record", "unreadable_model"])
def test_corrupt_entry_is_rebuilt_never_used(tmp_path: Path, damage: str) -> None:
    path = copy_checkpoint(tmp_path)
    good = onnx_cache.cached_onnx(path)
    entry, record = good.entry, good.entry.with_suffix(".json")
    if damage == "truncate":
        entry.write_bytes(good.model[: len(good.model) // 2])
    elif damage == "flip":  # one weight byte changed: still a loadable model, but not this one
        data = bytearray(good.model)
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif damage == "no_record":
        record.unlink()
    elif damage == "bad_record":
        record.write_text("{not json")
    else:  # bytes whose record matches but that onnxruntime cannot open
        junk = b"\x00junk" * 10
        entry.write_bytes(junk)
        record.write_text(json.dumps(onnx_cache._record(json.loads(record.read_text())["checkpoint_sha256"], 17, junk)))
        model = load_model(path)  # opened, refused by onnxruntime, exported again
        assert model.backend == "onnx" and entry.read_bytes() == good.model
        return
    rebuilt = onnx_cache.cached_onnx(path)
    assert not rebuilt.hit and rebuilt.model == good.model and entry.read_bytes() == good.model
    assert onnx_cache.cached_onnx(path).hit


def test_unwritable_cache_folder_exports_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(blocker / "cache"))  # cannot be created, even by root
    path = copy_checkpoint(tmp_path)
    with pytest.warns(onnx_cache.CacheWarning, match="cannot be written"):
        model = load_model(path)
    assert model.backend == "onnx"
    np.testing.assert_allclose(model.predict(TEST_IMAGES[1], conf=0.01),
                               load_model(path, backend="torch").predict(TEST_IMAGES[1], conf=0.01), atol=1e-4)
    assert blocker.read_text() == "in the way"


def test_failed_export_falls_back_to_pytorch_only_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = copy_checkpoint(tmp_path)

    def disagreeing(*args: object, **kwargs: object) -> tuple[bytes, float]:
        return b"whatever", 0.5  # onnxruntime far from PyTorch

    monkeypatch.setattr(onnx_cache, "onnx_model_bytes", disagreeing)
    with pytest.warns(UserWarning, match="differs from PyTorch's.*running it with PyTorch"):
        model = load_model(path)
    assert model.backend == "torch"
    with pytest.raises(OnnxExportError, match="differs from PyTorch's"):
        load_model(path, backend="onnx")

    def unsupported(*args: object, **kwargs: object) -> tuple[bytes, float]:
        raise OnnxExportError(f"{path}: cannot export the heatmap net to ONNX (unsupported operator)")

    monkeypatch.setattr(onnx_cache, "onnx_model_bytes", unsupported)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_model(path).backend == "torch"
    assert any("unsupported operator" in str(w.message) for w in caught)


def test_missing_and_broken_checkpoints_still_name_the_file(tmp_path: Path) -> None:
    from simple_keypoint.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="missing.pt: no such checkpoint file"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_model(junk)
    assert predict.BACKENDS == ("auto", "torch", "onnx")


def test_training_validation_runs_pytorch_on_the_live_net(tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weights change every step: validation must never go through the ONNX cache."""
    from simple_keypoint import training
    from simple_keypoint.dataset import CropDataset, load_dataset
    from simple_keypoint.heatmap.method import HEATMAP

    def no_onnx(*args: object, **kwargs: object) -> None:
        raise AssertionError("training's validation used the ONNX path")

    monkeypatch.setattr(onnx_cache, "cached_onnx", no_onnx)
    monkeypatch.setattr(predict, "cached_onnx", no_onnx)
    monkeypatch.setattr(OnnxLocalizer, "__init__", no_onnx)
    samples = load_dataset(tiny_dataset, progress=False)[0][:3]
    net = HEATMAP.build({})
    loader = torch.utils.data.DataLoader(CropDataset(samples, 64, augment=False), 3)

    def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return net(images).mean()

    metrics, _ = training.evaluate_epoch(net, HEATMAP, samples, loader, loss_fn, torch.device("cpu"))
    assert np.isfinite(metrics["loss"]) and "AP@3px" in metrics
