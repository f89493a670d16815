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


def run_page(page: Path, replace: tuple[str, str]) -> dict:
    """Execute the page's python blocks in one namespace, with the one string ``replace[0]`` (which must occur exactly
    once) replaced by ``replace[1]``; returns the namespace."""
    code = "\n".join(python_blocks(page.read_text()))
    assert code.count(replace[0]) == 1, f"{page.name} must contain {replace[0]} exactly once, as the test expects"
    ns: dict = {}
    try:
        exec(compile(code.replace(*replace), str(page), "exec"), ns)
    except Exception as e:  # pragma: no cover - the message points at the page
        pytest.fail(f"docs/{page.name} no longer runs: {type(e).__name__}: {e}")
    return ns


def test_tutorial_runs(tmp_path, capsys):
    assert len(python_blocks(TUTORIAL.read_text())) >= 8
    opt = tiny_optimizer(tmp_path / "opt")
    ns = run_page(TUTORIAL, (LOAD, f"lopt.load_params({str(opt)!r})"))
    out = capsys.readouterr().out
    assert "seeds converged" in out and "log-log slope" in out
    assert sum(line.startswith(("momentum: ", "clipping: ", "schedule: ", "adaptation: ")) for line in out.splitlines()) == 4
    assert ns["curve"].points.shape[0] == 82


def test_own_model_page_runs(tmp_path, capsys):
    pytest.importorskip("equinox")
    ns = run_page(OWN_MODEL, ('Path("own_model_loss.png")', f"Path({str(tmp_path / 'loss.png')!r})"))
    out = capsys.readouterr().out
    assert sum("final loss" in line for line in out.splitlines()) == 2
    assert len(ns["curves"]) == 2
    for name, c in ns["curves"].items():
        assert bool((c[:, -1] < 0.5 * c[:, 0]).all()), f"{name} did not lower the loss"
    assert (tmp_path / "loss.png").stat().st_size > 0
