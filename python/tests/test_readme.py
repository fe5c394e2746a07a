"""The README's Python example, run as written: from a folder holding the repository's
tests/ (its photo paths are relative), printing what its comments say and writing its files."""

import ast
import contextlib
import io
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    ours = [b for b in blocks if "import combicam" in b]
    assert len(ours) == 1, f"one README example of the package, found {len(ours)}"
    return ours[0]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    code = readme_example()
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    print("\n".join(printed))
    # what each print shows, which its comment in the README states too
    expected = [
        "espresso 0.596",
        "(224, 336) (7, 11)",
        "1.0",
        "(400, 600, 3)",
    ]
    prints = [line for line in code.splitlines() if line.startswith("print(")]
    assert len(printed) == len(prints) == len(expected) + 1, (printed, prints)
    for got, want, line in zip(printed, expected, prints):
        assert got == want, f"printed {got!r}, expected {want!r}"
        assert want in line.split("#", 1)[1], f"the README's comment does not say {want!r}: {line}"
    files = [
        "coffee.combicam.png",
        "coffee.heatmap.png",
        "coffee.json",
        "coffee.layercam.heatmap.png",
        "coffee.layercam.png",
    ]
    assert sorted(os.path.basename(p) for p in ast.literal_eval(printed[-1])) == files, printed[-1]
    assert sorted(os.listdir(tmp_path / "combicam-out" / "python")) == files
