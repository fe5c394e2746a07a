"""Every error path raises the documented class, which is also the matching built-in
exception, with a one-line message that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

import combicam
from combicam import _errors
from conftest import COFFEE, assert_one_line_error


def test_hierarchy():
    assert combicam.Error is _errors.Error
    for cls, base in [
        (combicam.InputError, ValueError),
        (combicam.ImageError, ValueError),
        (combicam.ImageNotFoundError, FileNotFoundError),
        (combicam.ImageNotFoundError, combicam.ImageError),
        (combicam.WeightsError, ValueError),
        (combicam.GpuError, RuntimeError),
        (combicam.OutputError, OSError),
    ]:
        assert issubclass(cls, combicam.Error) and issubclass(cls, base), (cls, base)


# ----------------------------------------------------------------------------- photos


def test_missing_file(builtin, tmp_path):
    missing = tmp_path / "no-such-photo.png"
    with pytest.raises(combicam.ImageNotFoundError) as e:
        builtin.explain(missing)
    assert isinstance(e.value, FileNotFoundError)
    assert isinstance(e.value, combicam.ImageError)
    assert_one_line_error(e, str(missing), "no such file")
    # the plain built-in class catches it too, and so do load_photo and predict
    with pytest.raises(FileNotFoundError):
        combicam.Explainer.load_photo(str(missing))
    with pytest.raises(combicam.ImageNotFoundError) as e:
        builtin.predict(missing)
    assert_one_line_error(e, str(missing))


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, "damaged"),
        ("truncated.png", None, "truncated"),  # the first 1000 bytes of coffee.png
        ("not-an-image.jpg", b"hello, this is text\n" * 5, "not a supported image"),
    ],
    ids=["corrupt", "truncated", "text"],
)
def test_corrupt_image(builtin, tmp_path, name, data, needle):
    f = tmp_path / name
    f.write_bytes(data if data is not None else COFFEE.read_bytes()[:1000])
    with pytest.raises(combicam.ImageError) as e:
        builtin.explain(f)
    assert isinstance(e.value, ValueError)
    assert not isinstance(e.value, FileNotFoundError)
    assert_one_line_error(e, str(f), needle)
    with pytest.raises(combicam.ImageError):
        combicam.Explainer.load_photo(f)


@pytest.mark.parametrize(
    "array, needles",
    [
        (np.zeros((10, 10, 2), np.uint8), ["(H, W, 3)", "[10, 10, 2]"]),
        (np.zeros((0, 0, 3), np.uint8), ["(H, W, 3)", "[0, 0, 3]"]),
        (np.zeros((10, 0, 3), np.uint8), ["(H, W, 3)"]),
        (np.zeros((10, 10), np.uint8), ["(H, W, 3)"]),
        (np.zeros((10, 10, 3), np.float32), ["uint8", "float32"]),
        (np.zeros((10, 10, 3), np.float64), ["uint8", "float64"]),
        ([[1, 2, 3]], ["uint8"]),
    ],
    ids=["2-channels", "0x0", "10x0", "grey-2d", "float32", "float64", "list"],
)
def test_bad_photo_arrays(builtin, array, needles):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(array)
    assert isinstance(e.value, ValueError)
    assert_one_line_error(e, *needles)


# ----------------------------------------------------------------------------- tensors


@pytest.mark.parametrize("shape", [(3, 20, 30), (1, 3, 20, 30)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_tensor_not_finite(builtin, shape, bad):
    x = np.zeros(shape, np.float32)
    x.reshape(3, 20, 30)[1, 5, 7] = bad
    with pytest.raises(combicam.InputError) as e:
        builtin.explain_tensor(x)
    msg = assert_one_line_error(e, "channel 1", "row 5", "column 7", "finite")
    assert ("nan" if np.isnan(bad) else "inf") in msg.lower()


@pytest.mark.parametrize(
    "x, needles",
    [
        (np.zeros((4, 20, 30), np.float32), ["(3, H, W)", "[4, 20, 30]"]),
        (np.zeros((2, 3, 20, 30), np.float32), ["(1, 3, H, W)", "[2, 3, 20, 30]"]),
        (np.zeros((20, 30, 3), np.float32), ["(3, H, W)", "[20, 30, 3]"]),
        (np.zeros((3, 0, 30), np.float32), ["(3, H, W)"]),
        (np.zeros((20, 30), np.float32), ["(3, H, W)"]),
        (np.zeros((3, 20, 30), np.float64), ["float32", "float64"]),
        (np.zeros((3, 20, 30), np.uint8), ["float32", "uint8"]),
    ],
    ids=["4-channels", "batch-2", "hwc", "zero-height", "2d", "float64", "uint8"],
)
def test_tensor_wrong_shape_or_dtype(builtin, x, needles):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain_tensor(x)
    assert isinstance(e.value, ValueError)
    assert_one_line_error(e, *needles)


# ----------------------------------------------------------------------------- options


def test_unknown_method(builtin):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, methods="gradcam,nosuchcam")
    assert_one_line_error(e, "nosuchcam", "gradcam")


@pytest.mark.parametrize("blocks", ["0-40", 16, [3, 99], "15-", "5-2", ""], ids=repr)
def test_blocks_out_of_range(builtin, blocks):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, blocks=blocks)
    assert_one_line_error(e, "block")


def test_blocks_out_of_range_names_the_block(builtin):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, blocks="0-40")
    assert_one_line_error(e, "block 40", "0-15")


def test_unknown_target_label(builtin):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, target="no such label xyzzy")
    assert_one_line_error(e, "no such label xyzzy", "label")


def test_target_index_out_of_range(builtin):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, target=1000)
    assert_one_line_error(e, "1000")


def test_region_score_on_imagenet(builtin):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, score="region:100")
    assert_one_line_error(e, "region", "geolocation")


def test_bad_score_and_fusion(builtin):
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, score="bogus")
    assert_one_line_error(e, "bogus", "prob")
    with pytest.raises(combicam.InputError) as e:
        builtin.explain(COFFEE, fusion="nope")
    assert_one_line_error(e, "nope", "sum")


def test_bad_on_error(builtin):
    with pytest.raises(combicam.InputError) as e:
        list(builtin.explain_many([COFFEE], on_error="ignore"))
    assert_one_line_error(e, "ignore", "raise", "skip")


# ----------------------------------------------------------------------------- weights, device


def test_missing_weights(tmp_path):
    w = tmp_path / "missing.safetensors"
    with pytest.raises(combicam.WeightsError) as e:
        combicam.Explainer(w)
    assert isinstance(e.value, ValueError)
    assert_one_line_error(e, str(w), "cannot be read")


def test_weights_not_weights(tmp_path):
    w = tmp_path / "notes.pt"
    w.write_text("not weights at all\n")
    with pytest.raises(combicam.WeightsError) as e:
        combicam.Explainer(weights=str(w))
    assert_one_line_error(e, str(w), "not weights")


def test_weights_truncated(tmp_path):
    w = tmp_path / "truncated.safetensors"
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(combicam.WeightsError) as e:
        combicam.Explainer(weights=w)
    assert_one_line_error(e, str(w))


def test_unknown_test_weights():
    with pytest.raises(combicam.InputError) as e:
        combicam.Explainer(test_weights="zz9")
    assert_one_line_error(e, "zz9")


def test_device_99():
    # there is no adapter 99: an InputError (a bad argument), not a GpuError
    n = len(combicam.devices())
    with pytest.raises(combicam.InputError) as e:
        combicam.Explainer(device=99)
    assert not isinstance(e.value, combicam.GpuError)
    assert_one_line_error(e, "adapter 99", f"{n} found")


# ----------------------------------------------------------------------------- output


@pytest.mark.parametrize("below", ["", "sub"], ids=["the-file", "below-the-file"])
def test_save_into_a_file(builtin, tmp_path, below):
    """save() into an existing file, or into a folder that would have to be made inside one:
    no folder can be made there, so nothing can be written: an OutputError (an OSError)."""
    r = builtin.explain(COFFEE, blocks=15)
    f = tmp_path / "a-file"
    f.write_text("x")
    out = f / below if below else f
    with pytest.raises(combicam.OutputError) as e:
        r.save(out)
    assert isinstance(e.value, OSError)
    assert_one_line_error(e, str(out))
    assert f.read_text() == "x"


def test_save_bad_alpha_and_fused_name(builtin, tmp_path):
    r = builtin.explain(COFFEE, blocks=15)
    with pytest.raises(combicam.InputError) as e:
        r.save(tmp_path / "out", alpha=1.5)
    assert_one_line_error(e, "alpha")
    with pytest.raises(combicam.InputError) as e:
        r.overlay(name="layercam.fused")
    assert_one_line_error(e, "layercam.fused", "combicam")
    with pytest.raises(combicam.InputError) as e:
        r.fused_at(size=(0, 10))
    assert_one_line_error(e, "size")
