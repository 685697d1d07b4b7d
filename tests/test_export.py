"""ONNX export and the onnxruntime backend give PyTorch's outputs and points; the fast predict path
gives the plain one's. Tiny nets are built in-process, so no training is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import detect
from simple_keypoint import export
from simple_keypoint.checkpoint import load_checkpoint, save_checkpoint
from simple_keypoint.heatmap.decode import decode_scores
from simple_keypoint.heatmap.model import HeatmapNet
from simple_keypoint.images import read_image, to_gray
from simple_keypoint.labels import read_labels
from simple_keypoint.predict import FastHeatmapNet, Localizer, OnnxLocalizer, load_model, pad_to_multiple
from simple_keypoint.regression.model import RegressionNet

ROOT = Path(__file__).resolve().parents[1]
TEST_IMAGES = sorted((ROOT / "data/test/images").glob("*.png"))
SIZES = [(64, 96), (80, 48)]


def randomise_batchnorm(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so folding and export have something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return net.eval()


def peaky_heatmap_net() -> HeatmapNet:
    """An untrained net's heatmap is nearly flat, where 1e-6 float differences move sub-pixel fits;
    a trained one has sharp peaks. This one gets sharp peaks by passing the image through strongly,
    gated by the (random) encoder-decoder."""
    torch.manual_seed(0)
    net = randomise_batchnorm(HeatmapNet((4, 8, 16), 2), 1)
    with torch.no_grad():
        net.to_full.deep.weight.mul_(0.1)
        net.to_full.deep.bias.fill_(1.0)
        net.to_full.skip.weight.fill_(1.0)
        net.to_full.skip.bias.zero_()
        net.head.weight.fill_(1.0)
        net.head.bias.fill_(-16.0)
    return net


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    nets = {"heatmap": (peaky_heatmap_net(), {"widths": (4, 8, 16), "full_res_channels": 2}),
            "regression": (randomise_batchnorm(RegressionNet((4, 8, 16), 2), 2), {"widths": (4, 8, 16), "full_res_channels": 2})}
    out = {}
    for method, (net, model_args) in nets.items():
        pt = folder / f"{method}.pt"
        save_checkpoint(pt, {"method": method, "model_args": model_args, "model_state": net.state_dict(),
                             "decode": {"conf": 0.4}})
        onnx_path = folder / f"{method}.onnx"
        assert export.main(["--weights", str(pt), "--out", str(onnx_path)]) == 0
        out[method] = {"pt": pt, "onnx": onnx_path}
    return out


def torch_output(method: str, net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return (net(x) if method == "heatmap" else net.locate(x)).numpy()


def with_spots(image: np.ndarray) -> np.ndarray:
    """A real frame, its brightest 0.5% clipped, plus three Gaussian spots (sigma 1.2 px) at
    sub-pixel positions: sharp peaks, and no logits in float32 sigmoid's saturation."""
    gray = to_gray(image)
    gray = np.minimum(gray, np.percentile(gray, 99.5))
    h, w = gray.shape
    amplitude = 10 * gray.std()  # well above the clutter whatever the frame's contrast
    yy, xx = np.mgrid[:h, :w]
    for u, v in ((0.3 * w + 0.37, 0.4 * h + 0.21), (0.7 * w - 0.2, 0.25 * h + 0.45), (0.5 * w + 0.1, 0.8 * h - 0.3)):
        gray += amplitude * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.2**2))
    return gray


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_onnx_equals_torch_on_random_inputs(models: dict, method: str) -> None:
    """Batch 2 at two image sizes (dynamic axes); heatmap: against the plain HeatmapNet, so the
    folded full-resolution layers are checked too."""
    reference = load_model(models[method]["pt"], device="cpu", backend="torch").net
    session = ort.InferenceSession(str(models[method]["onnx"]), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(3)
    for h, w in SIZES:
        x = torch.randn(2, 1, h, w, generator=g) * 3
        got = session.run(None, {"image": x.numpy()})[0]
        ref = torch_output(method, reference, x)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_onnx_equals_torch_on_a_real_image(models: dict, method: str) -> None:
    image = with_spots(read_image(TEST_IMAGES[0]))
    torch_loc, onnx_loc = load_model(models[method]["pt"], device="cpu", backend="torch"), load_model(models[method]["onnx"])
    assert isinstance(onnx_loc, OnnxLocalizer) and onnx_loc.method == method
    assert onnx_loc.conf == pytest.approx(0.4) and onnx_loc.stride == torch_loc.stride
    x = pad_to_multiple(torch.from_numpy(torch_loc.standardised(image))[None, None], torch_loc.stride)
    np.testing.assert_allclose(onnx_loc.run_net(x).numpy(), torch_output(method, torch_loc.net, x), atol=1e-4, rtol=0)
    conf = 0.0 if method == "regression" else None  # an untrained regression net is never confident
    points, onnx_points = torch_loc.predict(image, conf), onnx_loc.predict(image, conf)
    assert len(points) >= (3 if method == "heatmap" else 1)  # the check below is not vacuous
    assert points.shape == onnx_points.shape
    np.testing.assert_allclose(onnx_points[:, :2], points[:, :2], atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_points[:, 2], points[:, 2], atol=1e-5, rtol=0)
    if method == "heatmap":
        np.testing.assert_allclose(onnx_loc.heatmap(image), torch_loc.heatmap(image), atol=1e-5, rtol=0)


def test_fast_path_gives_the_plain_paths_points(models: dict) -> None:
    """FastHeatmapNet + decode_logits (what predict runs) == HeatmapNet + a float64 sigmoid map +
    decode_scores: the folded net, and decoding the logits rather than the scores, change nothing."""
    loc = load_model(models["heatmap"]["pt"], device="cpu", backend="torch")
    loc.relative = False  # plain scores, so that decode_scores on the sigmoid map is the reference
    assert isinstance(loc._fast_net(), FastHeatmapNet)
    compared = 0
    for path in TEST_IMAGES[:8]:
        gray = loc.standardised(with_spots(read_image(path)))
        with torch.inference_mode():
            logits = loc.net(pad_to_multiple(torch.from_numpy(gray)[None, None], loc.stride))[0, 0, :gray.shape[0], :gray.shape[1]]
        got = loc.predict_standardised(gray)
        assert len(np.unique(got[:, :2].round(), axis=0)) == len(got)  # never two points on one pixel
        expected = decode_scores(torch.sigmoid(logits.double()).numpy(), loc.conf, loc.max_points)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        compared += len(got)
    assert compared >= 10


@pytest.mark.parametrize("widths,full_res,context", [((8, 16, 32, 64), 4, False), ((4, 8), 1, False),
                                                     ((8, 16, 32), 3, False), ((8, 16, 32, 64), 4, True)])
def test_fast_heatmap_net_equals_heatmap_net(widths: tuple[int, ...], full_res: int, context: bool) -> None:
    net = randomise_batchnorm(HeatmapNet(widths, full_res, context), 4)
    fast = FastHeatmapNet.checked(net)
    assert isinstance(fast, FastHeatmapNet)
    x = torch.randn(2, 1, 2 * net.stride, 3 * net.stride)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(x).numpy(), net(x).numpy(), atol=1e-4, rtol=1e-5)


def test_localizer_follows_weight_changes() -> None:
    """The folded copy is rebuilt when the net's weights change (e.g. between training epochs)."""
    net = randomise_batchnorm(HeatmapNet((4, 8), 2), 5)
    loc = Localizer("heatmap", net, conf=0.0, device="cpu")
    image = np.random.default_rng(0).normal(size=(40, 56)).astype(np.float32)
    before = loc.heatmap(image)
    with torch.no_grad():
        net.head.bias.add_(1.0)
    after = loc.heatmap(image)
    with torch.inference_mode():
        expected = torch.sigmoid(net(pad_to_multiple(torch.from_numpy(loc.standardised(image))[None, None], 4)))
    np.testing.assert_allclose(after, expected[0, 0, :40, :56].numpy(), atol=1e-5)
    assert not np.allclose(before, after)


def run_detect(weights: Path, out: Path, source: Path, *extra: str) -> dict[str, np.ndarray]:
    assert detect.main(["--weights", str(weights), "--source", str(source), "--out", str(out), "--quiet", *extra]) == 0
    return {p.name: read_labels(p) for p in sorted((out / "labels").glob("*.txt"))}


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_detect_onnx_backend_writes_the_same_labels(models: dict, method: str, tmp_path: Path) -> None:
    source = tmp_path / "frames"
    source.mkdir()
    for path in TEST_IMAGES[:3]:
        (source / path.name).write_bytes(path.read_bytes())
    conf = ["--conf", "0"] if method == "regression" else []
    by_torch = run_detect(models[method]["pt"], tmp_path / "torch", source, *conf)
    by_onnx_file = run_detect(models[method]["onnx"], tmp_path / "onnx", source, *conf)
    by_onnx_backend = run_detect(models[method]["pt"], tmp_path / "onnx2", source, "--backend", "onnx", *conf)
    assert len(by_torch) == 3 and sum(len(v) for v in by_torch.values()) > 0
    for labels in (by_onnx_file, by_onnx_backend):
        assert labels.keys() == by_torch.keys()
        for name, rows in by_torch.items():
            assert labels[name].shape == rows.shape, name
            # files hold 6 decimals: equal up to rounding of the last one
            np.testing.assert_allclose(labels[name], rows, atol=2e-6, rtol=0)


def test_export_cli_errors(models: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        export.main(["--help"])
    assert e.value.code == 0
    assert export.main(["--weights", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "missing.pt: no such checkpoint file" in capsys.readouterr().err
    assert export.main(["--weights", str(models["heatmap"]["pt"]), "--out", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert export.main(["--weights", str(models["heatmap"]["onnx"])]) == 2
    assert "already an ONNX file" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    assert detect.main(["--weights", str(bad), "--source", str(TEST_IMAGES[0]), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert export.main(["--weights", str(models["regression"]["pt"]), "--out", str(tmp_path / "r.onnx"), "--opset", "18"]) == 0
    assert load_checkpoint(models["regression"]["pt"])["method"] == load_model(tmp_path / "r.onnx").method


def test_export_refuses_an_existing_file_unless_overwrite(models: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "notes.onnx"
    mine.write_bytes(b"the user's own file")
    assert export.main(["--weights", str(models["heatmap"]["pt"]), "--out", str(mine)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: --out {mine} already exists (--overwrite replaces it)\n"
    assert mine.read_bytes() == b"the user's own file"
    assert export.main(["--weights", str(models["heatmap"]["pt"]), "--out", str(mine), "--overwrite"]) == 0
    assert load_model(mine).method == "heatmap"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.onnx"]  # atomic: no temp file left beside it


def test_seed_baseline_nets() -> None:
    """The seed article's nets as the benchmarks use them: ~0.37 GFLOP per 360x480 frame, one
    point mapped back to the frame's pixel coordinates."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.seed_nets import SEED_SIZE, SeedHeatmapNet, SeedRegressionNet, argmax_point, seed_input, xy_point

    x = seed_input(np.zeros((256, 320), np.uint8))
    assert x.shape == (1, 3, *SEED_SIZE)
    net = SeedHeatmapNet().eval()
    with FlopCounterMode(display=False) as flops, torch.inference_mode():
        logits = net(x)
    assert logits.shape == (1, 1, *SEED_SIZE)
    assert 0.36e9 < flops.get_total_flops() < 0.39e9
    peak = torch.full((1, 1, *SEED_SIZE), -5.0)
    peak[0, 0, 180, 240] = 3.0  # pixel centres scale: u = (240 + 0.5) * 320 / 480 - 0.5
    expected = [[240.5 * 320 / 480 - 0.5, 180.5 * 256 / 360 - 0.5, 1 / (1 + np.exp(-3.0))]]
    np.testing.assert_allclose(argmax_point(peak, 256, 320), expected, rtol=1e-6)
    with torch.inference_mode():
        xy = SeedRegressionNet().eval()(x)
    assert xy.shape == (1, 2) and bool(((xy > 0) & (xy < 1)).all())
    np.testing.assert_allclose(xy_point(torch.tensor([0.5, 0.25]), 256, 320), [[159.5, 63.5, 1.0]])


def test_export_a_net_with_global_context(tmp_path: Path) -> None:
    """--context nets (a whole-frame mean inside) export with dynamic sizes and match PyTorch."""
    net = randomise_batchnorm(HeatmapNet((4, 8, 16), 2, context=True), 6)
    checkpoint = {"method": "heatmap", "model_args": {"widths": (4, 8, 16), "full_res_channels": 2, "context": True},
                  "model_state": net.state_dict(), "decode": {"conf": 0.3}}
    assert export.export_onnx(checkpoint, tmp_path / "context.onnx") < 1e-4  # checked at two image sizes


def test_every_onnx_session_lets_idle_workers_sleep(models: dict) -> None:
    """Two sessions (U-shape and verifier) with spinning workers starve each other on a small machine."""
    model = load_model(models["heatmap"]["onnx"], threads=0)
    assert isinstance(model, OnnxLocalizer)
    assert model.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
