"""save() writes the command line's files, and overlay() / heatmap() are its PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import COFFEE, cli_run, assert_equal_tensors, raw_tensors_of, read_safetensors


@pytest.fixture(scope="module")
def coffee(builtin):
    return builtin.explain(str(COFFEE))


@pytest.fixture(scope="module")
def cli_out(cli_bin, tmp_path_factory):
    """The command line's files for coffee.png (with the raw maps)."""
    base = tmp_path_factory.mktemp("save-cli")
    out = base / "out"
    cli_run(cli_bin, "explain", COFFEE, "--out", out, "--save-raw", cwd=base / "cwd")
    return out


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_save_writes_the_cli_file_names(coffee, tmp_path, cli_out):
    out = tmp_path / "py"
    written = coffee.save(out)
    names = sorted(Path(p).name for p in written)
    assert names == ["coffee.combicam.png", "coffee.heatmap.png", "coffee.json"]
    for p in written:
        assert Path(p).is_file() and Path(p).parent.resolve() == out.resolve()

    out_raw = tmp_path / "py-raw"
    written = coffee.save(str(out_raw), raw=True)
    names = sorted(Path(p).name for p in written)
    assert names == sorted(
        ["coffee.combicam.png", "coffee.heatmap.png", "coffee.json", "coffee.cams.safetensors"]
    )
    cli_names = sorted(p.name for p in cli_out.iterdir() if p.name != "index.jsonl")
    assert names == cli_names


def test_saved_raw_file_equals_the_arrays_and_the_cli(coffee, tmp_path, cli_out):
    coffee.save(tmp_path, raw=True)
    saved, meta = read_safetensors(tmp_path / "coffee.cams.safetensors")
    assert_equal_tensors(saved, raw_tensors_of(coffee), "saved raw file vs the arrays")
    cli, cli_meta = read_safetensors(cli_out / "coffee.cams.safetensors")
    assert_equal_tensors(saved, cli, "saved raw file vs the command line's")
    assert meta == cli_meta
    assert meta.get("target") == str(coffee.target.index)


def test_saved_pngs_and_overlay_equal_the_cli(coffee, tmp_path, cli_out):
    coffee.save(tmp_path)
    cli_overlay = _png(cli_out / "coffee.combicam.png")
    cli_heat = _png(cli_out / "coffee.heatmap.png")
    assert cli_overlay.shape == (400, 600, 3)

    ov = coffee.overlay()
    assert ov.dtype == np.uint8 and ov.shape == cli_overlay.shape
    assert np.array_equal(ov, cli_overlay)
    assert np.array_equal(coffee.overlay(alpha=0.5), cli_overlay)
    hm = coffee.heatmap()
    assert hm.dtype == np.uint8 and np.array_equal(hm, cli_heat)

    assert np.array_equal(_png(tmp_path / "coffee.combicam.png"), cli_overlay)
    assert np.array_equal(_png(tmp_path / "coffee.heatmap.png"), cli_heat)

    # alpha's ends: the photo itself, and the heat map itself
    photo = _png(COFFEE)
    assert np.array_equal(coffee.overlay(alpha=0.0), photo)
    assert np.array_equal(coffee.overlay(alpha=1.0), cli_heat)
    # size: the longest side
    assert coffee.overlay(size=300).shape == (200, 300, 3)


def test_saved_json_is_the_cli_report(coffee, tmp_path, cli_out):
    coffee.save(tmp_path)
    ours = json.loads((tmp_path / "coffee.json").read_text())
    cli = json.loads((cli_out / "coffee.json").read_text())
    for key in ["prediction", "target", "explained", "score", "model", "weights",
                "input_size", "original_size", "blocks_fused", "fused_range", "blocks",
                "methods"]:
        assert ours[key] == cli[key], key
    assert coffee.report["prediction"] == cli["prediction"]
    assert coffee.report["blocks"] == cli["blocks"]


def test_fused_at_photo_size(coffee):
    big = coffee.fused_at()
    assert big.dtype == np.float32 and big.shape == coffee.photo_size
    assert 0.0 <= big.min() and big.max() <= 1.0
    assert coffee.fused_at(size=coffee.input_size).shape == coffee.input_size
    assert coffee.fused_at(name="combicam").shape == coffee.photo_size


def test_save_stem_and_tensor_default_stem(builtin, coffee, tmp_path):
    written = coffee.save(tmp_path / "a", stem="mine")
    assert sorted(Path(p).name for p in written) == [
        "mine.combicam.png", "mine.heatmap.png", "mine.json"]
    r = builtin.explain_tensor(builtin.preprocess(COFFEE))
    written = r.save(tmp_path / "b")
    assert sorted(Path(p).name for p in written) == [
        "image.combicam.png", "image.heatmap.png", "image.json"]
