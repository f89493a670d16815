"""docs/tutorial.md runs as written: its python blocks are executed in order, in one namespace.

The only change: the shipped optimizer is replaced by a small untrained one (H = 8, random readout) so the test is
fast and does not depend on shipped files. This checks the tutorial against the API, not the paper's claims.
"""

import re
from pathlib import Path

import pytest

from helpers import tiny_optimizer

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
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
