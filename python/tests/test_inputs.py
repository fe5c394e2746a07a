"""Every kind of input gives the same explanation: a str path, a pathlib.Path, the decoded
array, a PIL image, the preprocessed tensor (numpy (3, H, W) and (1, 3, H, W), or a
torch-like object)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import combicam
from conftest import COFFEE, assert_same_explanation


@pytest.fixture(scope="module")
def reference(builtin):
    return builtin.explain(str(COFFEE))


def test_prediction_is_espresso(builtin, reference):
    top = reference.prediction
    assert len(top) == 5
    assert str(top[0]) == "espresso"
    assert top[0].label == "espresso" and top[0].lat is None and top[0].lon is None
    assert isinstance(top[0], combicam.Entry)
    assert [e.probability for e in top] == sorted((e.probability for e in top), reverse=True)
    assert reference.target.index == top[0].index
    assert top[0].probability == pytest.approx(float(reference.probs[top[0].index]))
    # top_k is honoured
    assert len(builtin.explain(COFFEE, top_k=2).prediction) == 2


def test_predict_agrees_with_explain(builtin, reference):
    p = builtin.predict(COFFEE, top_k=3)
    assert len(p) == 3
    assert str(p[0]) == "espresso"
    assert [e.index for e in p] == [e.index for e in reference.prediction[:3]]


def test_sizes_and_report(reference):
    assert reference.photo_size == (400, 600)
    assert reference.input_size == (224, 336)
    rep = reference.report
    assert rep["explained"]["label"] == "espresso"
    assert tuple(rep["input_size"]) == reference.input_size
    assert tuple(rep["original_size"]) == reference.photo_size


def test_pathlib_path(builtin, reference):
    assert_same_explanation(builtin.explain(Path(COFFEE)), reference, "pathlib.Path vs str")


def test_load_photo_array(builtin, reference):
    a = combicam.Explainer.load_photo(COFFEE)
    assert a.dtype == np.uint8 and a.shape == (400, 600, 3)
    r = builtin.explain(a)
    assert_same_explanation(r, reference, "load_photo array vs path")
    assert r.photo_size == reference.photo_size
    # a non-contiguous view of the same pixels is the same photo
    r2 = builtin.explain(np.asfortranarray(a))
    assert_same_explanation(r2, reference, "Fortran-ordered array vs path")


def test_pil_image(builtin, reference):
    from PIL import Image  # pillow is in the test extra; a missing one fails

    with Image.open(COFFEE) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), combicam.Explainer.load_photo(COFFEE))
        r = builtin.explain(im)
    assert_same_explanation(r, reference, "PIL image vs path")


def test_preprocess(builtin):
    x = builtin.preprocess(COFFEE)
    assert x.dtype == np.float32 and x.shape == (3, 224, 336)
    assert np.isfinite(x).all()
    # mean 0.5, std 0.5: values in [-1, 1]
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.array_equal(x, builtin.preprocess(str(COFFEE)))
    assert np.array_equal(x, builtin.preprocess(combicam.Explainer.load_photo(COFFEE)))


def test_explain_tensor_chw(builtin, reference):
    r = builtin.explain_tensor(builtin.preprocess(COFFEE))
    assert_same_explanation(r, reference, "explain_tensor (3, H, W) vs explain")


def test_explain_tensor_nchw(builtin, reference):
    x = builtin.preprocess(COFFEE)[None]
    assert x.shape == (1, 3, 224, 336)
    r = builtin.explain_tensor(x)
    assert_same_explanation(r, reference, "explain_tensor (1, 3, H, W) vs explain")


class FakeTorch:
    """What explain_tensor needs of a torch tensor: detach(), cpu(), numpy()."""

    def __init__(self, a):
        self.a = a
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def numpy(self):
        self.calls.append("numpy")
        return self.a


def test_explain_tensor_torch_like(builtin, reference):
    t = FakeTorch(builtin.preprocess(COFFEE)[None])
    r = builtin.explain_tensor(t)
    assert t.calls == ["detach", "cpu", "numpy"]
    assert_same_explanation(r, reference, "torch-like tensor vs explain")


def test_explain_tensor_non_contiguous(builtin, reference):
    # a channels-last buffer seen as (3, H, W), as torch's permute gives: same values, same maps
    x = builtin.preprocess(COFFEE)
    hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
    view = hwc.transpose(2, 0, 1)
    assert not view.flags.c_contiguous and np.array_equal(view, x)
    r = builtin.explain_tensor(FakeTorch(view))
    assert_same_explanation(r, reference, "non-contiguous tensor vs explain")
