"""The docs run as written: their python blocks are executed in order, in one namespace.

docs/tutorial.md: the only change is that the shipped optimizer is replaced by a small untrained one (H = 8, random
readout) so the test is fast and does not depend on shipped files. This checks the tutorial against the API, not the
paper's claims. docs/own_model.md runs with the shipped two_moons optimizer; only its figure goes to a temporary
folder, and only what is robust is asserted (both optimizers lower the loss), not which one wins.
"""

import re
from pathlib import Path

import pytest

from helpers import tiny_optimizer

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIAL = DOCS / "tutorial.md"
OWN_MODEL = DOCS / "own_model.md"
LOAD = 'lopt.load_params("linreg")'


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_tutorial_runs(tmp_path, capsys):
    text = TUTORIAL.read_text()
    blocks = python_blocks(text)
    assert len(blocks) >= 8
    code = "\n".join(blocks)
    assert code.count(LOAD) == 1, "the tutorial must load its optimizer exactly once, as the test expects"
    opt = tiny_optimizer(tmp_path / "opt")
    code = code.replace(LOAD, f"lopt.load_params({str(opt)!r})")
    ns: dict = {}
    try:
        exec(compile(code, str(TUTORIAL), "exec"), ns)
    except Exception as e:  # pragma: no cover - the message points at the tutorial
        pytest.fail(f"docs/tutorial.md no longer runs: {type(e).__name__}: {e}")
    out = capsys.readouterr().out
    assert "seeds converged" in out and "log-log slope" in out
    assert sum(line.startswith(("momentum: ", "clipping: ", "schedule: ", "adaptation: ")) for line in out.splitlines()) == 4
    assert ns["curve"].points.shape[0] == 82


def test_own_model_page_runs(tmp_path, capsys):
    pytest.importorskip("equinox")
    code = "\n".join(python_blocks(OWN_MODEL.read_text()))
    figure = 'Path("own_model_loss.png")'
    assert code.count(figure) == 1, "the page must name its figure exactly once, as the test expects"
    code = code.replace(figure, f"Path({str(tmp_path / 'loss.png')!r})")
    ns: dict = {}
    try:
        exec(compile(code, str(OWN_MODEL), "exec"), ns)
    except Exception as e:  # pragma: no cover - the message points at the page
        pytest.fail(f"docs/own_model.md no longer runs: {type(e).__name__}: {e}")
    out = capsys.readouterr().out
    assert sum("final loss" in line for line in out.splitlines()) == 2
    assert len(ns["curves"]) == 2
    for name, c in ns["curves"].items():
        assert bool((c[:, -1] < 0.5 * c[:, 0]).all()), f"{name} did not lower the loss"
    assert (tmp_path / "loss.png").stat().st_size > 0
