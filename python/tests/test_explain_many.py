"""explain_many over the photos folder: one Explanation per photo the command line explains,
each equal to explain() of its path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import combicam
from conftest import COFFEE, PHOTOS, assert_same_explanation


def test_folder_matches_the_cli(builtin, photos_dir, run_cli, tmp_path):
    out = tmp_path / "cli"
    run_cli("explain", photos_dir, "--out", out)
    reports = sorted(out.rglob("*.json"))
    assert reports, f"the command line wrote no report into {out}"
    cli_images = sorted(
        Path(json.loads(p.read_text())["prediction"]["image"]).resolve() for p in reports
    )

    results = list(builtin.explain_many(photos_dir))
    assert len(results) == len(reports)
    assert all(isinstance(r, combicam.Explanation) for r in results)
    ours = [Path(r.report["prediction"]["image"]).resolve() for r in results]
    assert ours == cli_images  # in the command line's (sorted) order
    for path, r in zip(ours, results):
        assert_same_explanation(r, builtin.explain(path), f"explain_many vs explain of {path.name}")


def test_mixed_items_in_order(builtin):
    a = combicam.Explainer.load_photo(COFFEE)
    items = [str(COFFEE), a, Path(PHOTOS / "chelsea.png")]
    results = list(builtin.explain_many(items, blocks="10-15"))
    assert len(results) == 3
    assert_same_explanation(results[0], results[1], "path vs array in explain_many")
    assert_same_explanation(
        results[2], builtin.explain(PHOTOS / "chelsea.png", blocks="10-15"), "chelsea")
    assert sorted(results[0].maps["gradcam"]) == list(range(10, 16))


def test_on_error(builtin, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(combicam.ImageError):
        list(builtin.explain_many([bad, COFFEE], blocks=15))
    with pytest.warns(UserWarning, match="broken.png"):
        results = list(builtin.explain_many([bad, COFFEE], on_error="skip", blocks=15))
    assert len(results) == 1
    assert str(results[0].prediction[0]) == "espresso"


def test_empty(builtin):
    assert list(builtin.explain_many([])) == []
