"""The package's numbers are the command line's, bit for bit: probs, logits, every block map
and every fused map of the raw file (`--save-raw`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import combicam
from conftest import COFFEE, assert_equal_tensors, raw_tensors_of, shipped_photos


def test_photos_are_shipped(photos_dir):
    names = [p.name for p in shipped_photos()]
    assert "coffee.png" in names and len(names) >= 2, names


@pytest.mark.parametrize("photo", shipped_photos(), ids=lambda p: p.name)
def test_builtin_combicam_equals_cli(builtin, cli_raw, photo):
    want = cli_raw(photo)
    r = builtin.explain(str(photo))
    got = raw_tensors_of(r)
    # the default is Combi-CAM: Grad-CAM at every block of Lite0, fused by sum
    assert list(r.maps) == ["gradcam"]
    assert sorted(r.maps["gradcam"]) == list(range(16))
    assert list(r.fused_maps) == ["combicam"]
    assert_equal_tensors(got, want, f"{photo.name}, built-in Lite0")
    # the fused map is in [0, 1] at the input size, and `fused` is the first fused map
    assert r.fused.dtype == np.float32 and r.fused.shape == r.input_size
    assert np.array_equal(r.fused, want["combicam"])
    assert 0.0 <= r.fused.min() and r.fused.max() <= 1.0
    assert r.probs.shape == (1000,) and r.logits.shape == (1000,)
    assert r.target.index == int(np.argmax(r.probs))


def test_two_methods_equal_cli(builtin, cli_raw):
    want = cli_raw(COFFEE, "--method", "gradcam,layercam")
    r = builtin.explain(COFFEE, methods="gradcam,layercam")
    assert sorted(r.maps) == ["gradcam", "layercam"]
    assert sorted(r.fused_maps) == ["combicam", "layercam.fused"]
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, gradcam,layercam")
    # the list form asks for the same
    r2 = builtin.explain(COFFEE, methods=["gradcam", "layercam"])
    assert_equal_tensors(raw_tensors_of(r2), want, "coffee.png, methods as a list")


def test_blocks_equal_cli(builtin, cli_raw):
    want = cli_raw(COFFEE, "--blocks", "0-5,15")
    r = builtin.explain(COFFEE, blocks="0-5,15")
    assert sorted(r.maps["gradcam"]) == [0, 1, 2, 3, 4, 5, 15]
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, blocks 0-5,15")
    r2 = builtin.explain(COFFEE, blocks=[0, 1, 2, 3, 4, 5, 15])
    assert_equal_tensors(raw_tensors_of(r2), want, "coffee.png, blocks as a list")


def test_b4_test_weights_equal_cli(b4, cli_raw):
    want = cli_raw(COFFEE, "--test-weights", "b4", "--cells", "1000")
    r = b4.explain(COFFEE)
    assert sorted(r.maps["gradcam"]) == list(range(32))
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, B4 test weights")
    # a geolocation model's entries are cells with centres, and print as such
    t = r.target
    assert t.label is None and t.lat is not None and t.lon is not None
    assert str(t).startswith(f"cell {t.index} (")
    assert r.probs.shape == (1000,)


def test_b4_confidence_radii_equal_the_cli_json(b4, run_cli, tmp_path):
    out = tmp_path / "json-out"
    run_cli("explain", COFFEE, "--out", out, "--test-weights", "b4", "--cells", "1000")
    want = json.loads((out / "coffee.json").read_text())["prediction"]["confidence_km"]
    got = b4.explain(COFFEE).confidence_km
    assert got is not None and len(got) == len(want) >= 3
    assert {str(r): p for r, p in got.items()} == want
    # the mass grows with the radius, up to at most 1
    masses = [got[r] for r in sorted(got)]
    assert masses == sorted(masses) and masses[-1] <= 1.0 + 1e-9


def test_a_classifier_has_no_confidence_radii(builtin):
    assert builtin.explain(COFFEE).confidence_km is None


def test_eigen_smooth_equals_cli(builtin, cli_raw):
    want = cli_raw(COFFEE, "--method", "gradcam,layercam", "--blocks", "10-15", "--eigen-smooth")
    r = builtin.explain(COFFEE, methods="gradcam,layercam", blocks="10-15", eigen_smooth=True)
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, --eigen-smooth")
    # and it is not the plain maps
    plain = builtin.explain(COFFEE, methods="gradcam,layercam", blocks="10-15")
    assert not np.allclose(plain.maps["gradcam"][15], r.maps["gradcam"][15])


def test_aug_smooth_equals_cli(builtin, cli_raw):
    want = cli_raw(COFFEE, "--blocks", "14-15", "--aug-smooth")
    r = builtin.explain(COFFEE, blocks="14-15", aug_smooth=True)
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, --aug-smooth")
    plain = builtin.explain(COFFEE, blocks="14-15")
    assert not np.allclose(plain.fused, r.fused)


def test_finercam_comparison_equals_cli(builtin, cli_raw):
    want = cli_raw(COFFEE, "--method", "finercam", "--blocks", "14-15", "--comparison", "5")
    r = builtin.explain(COFFEE, methods="finercam", blocks="14-15", comparison=5)
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, finercam --comparison 5")
    three = builtin.explain(COFFEE, methods="finercam", blocks="14-15")
    assert not np.allclose(three.maps["finercam"][15], r.maps["finercam"][15])
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, methods="finercam", comparison=0)
    assert "comparison=0" in str(e.value) and "\n" not in str(e.value)


def test_fullgrad_and_kpcacam_alone_equal_cli(builtin, cli_raw):
    want = cli_raw(COFFEE, "--method", "fullgrad", "--score", "logit")
    r = builtin.explain(COFFEE, methods="fullgrad", score="logit")
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, fullgrad")
    assert sorted(r.maps["fullgrad"]) == list(range(16))
    # kpcacam alone and without blocks: the blocks that fit this photo (3-15 at 224x336)
    want = cli_raw(COFFEE, "--method", "kpcacam")
    r = builtin.explain(COFFEE, methods="kpcacam")
    assert_equal_tensors(raw_tensors_of(r), want, "coffee.png, kpcacam")
    assert sorted(r.maps["kpcacam"]) == list(range(3, 16))
