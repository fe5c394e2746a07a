"""`Explainer.evaluate` against `combicam-gpu evaluate --json`: the same metrics, curves, ROAD
and means, number for number (both run the library's `app::evaluation`)."""

from __future__ import annotations

import json

import pytest

import combicam
from conftest import assert_one_line_error


def test_evaluate_equals_the_command_lines_json(builtin, run_cli, photos_dir, tmp_path):
    photos = [str(photos_dir / "coffee.png"), str(photos_dir / "chelsea.png")]
    explainers = "combicam,layercam@14-15:max,random"
    out = tmp_path / "metrics.json"
    run_cli(
        "evaluate", *photos, "--explainers", explainers, "--steps", "3", "--json", out
    )
    want = json.loads(out.read_text())
    got = builtin.evaluate(photos, explainers=explainers.split(","), steps=3)
    assert set(got) == set(want), (sorted(got), sorted(want))
    for key in ("steps", "model", "weights", "adapter", "mean"):
        assert got[key] == want[key], key
    assert len(got["images"]) == len(want["images"]) == 2
    for g, w in zip(got["images"], want["images"]):
        assert g == w, f"the metrics of {w['image']} differ"
    m = got["mean"]["combicam"]
    print(
        f"\ncombicam on 2 photos, 3 steps: deletion AUC {m['deletion_auc']:.4f}, "
        f"insertion AUC {m['insertion_auc']:.4f}, average drop {m['average_drop']:.2f}%"
    )
    assert 0.0 <= m["deletion_auc"] <= 1.0 and 0.0 <= m["insertion_auc"] <= 1.0
    # ROAD, as the command line computes it (σ = 0.01, seeded: the same numbers)
    road = got["images"][0]["explainers"]["combicam"]["road"]
    assert len(road["morf"]) == len(road["lerf"]) == 9 and len(m["road"]) == 3


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"steps": 0}, "steps=0"),
        ({"explainers": "nosuchcam"}, "nosuchcam"),
        ({"explainers": "gradcam@40"}, "40"),
        ({"batch": 0}, "batch=0"),
        ({"road_noise": -1.0}, "road_noise="),
    ],
)
def test_evaluate_refuses_bad_arguments(builtin, photos_dir, kwargs, needle):
    with pytest.raises(combicam.InputError) as e:
        builtin.evaluate([str(photos_dir / "coffee.png")], **kwargs)
    assert_one_line_error(e, needle)


def test_evaluate_of_a_missing_photo(builtin, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        builtin.evaluate([str(tmp_path / "nope.jpg")])
    assert_one_line_error(e, "nope.jpg")


def test_road_options_equal_the_command_lines(builtin, run_cli, photos_dir, tmp_path):
    photo = str(photos_dir / "coffee.png")
    for flags, kwargs in [(["--road-noise", "0"], {"road_noise": 0.0}), (["--no-road"], {"road_noise": None})]:
        out = tmp_path / "metrics.json"
        run_cli("evaluate", photo, "--explainers", "combicam", "--steps", "2", *flags, "--json", out)
        want = json.loads(out.read_text())
        got = builtin.evaluate([photo], explainers="combicam", steps=2, **kwargs)
        assert got["images"] == want["images"], flags
        has_road = "road" in got["images"][0]["explainers"]["combicam"]
        assert has_road == (kwargs["road_noise"] is not None), flags
