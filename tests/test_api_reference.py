"""The API reference builds from the docstrings (pdoc) without a warning or a cross-reference that does not resolve
(scripts/api_reference.py, the command that builds it locally)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import api_reference  # noqa: E402


def test_api_reference_builds_clean(tmp_path):
    import pdoc.extract

    modules = api_reference.public_modules()
    covered = set(pdoc.extract.walk_specs(modules))
    assert {"lorex", "lorex.api", "lorex.lopt", "lorex.meta", "lorex.tasks", "lorex.tasks.base", "lorex.analysis",
            "lorex.distill.family", "lorex.mechanisms.evidence", "lorex.report.html"} <= covered
    assert not any("._" in m or m.endswith("__main__") for m in covered)
    problems = api_reference.build(tmp_path, modules)
    assert problems == []
    for page in ("index.html", "lorex.html", "lorex/tasks.html", "lorex/tasks/base.html", "lorex/lopt.html"):
        assert (tmp_path / page).is_file(), page
    assert "TaskPolicy" in (tmp_path / "lorex/tasks/base.html").read_text()


MODULE = '''"""See :func:`nowhere`, :class:`Real`, :func:`~ref_check_mod.Real.go` and :mod:`json`."""


class Real:
    """Fine: :meth:`go` and :attr:`size`."""

    size: int = 3

    def go(self, x: "Nope") -> None:
        """Broken: :data:`GONE`."""
'''


def test_the_check_catches_a_broken_reference_and_a_pdoc_warning(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ref_check_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    assert api_reference.broken_references(["ref_check_mod"]) == [
        "ref_check_mod: :func:`nowhere` does not resolve", "ref_check_mod.Real.go: :data:`GONE` does not resolve"]
    problems = api_reference.build(tmp_path / "out", ["ref_check_mod"])
    assert any(p.startswith("pdoc UserWarning: Error parsing type annotation") and "Nope" in p for p in problems)
    assert problems[-2:] == api_reference.broken_references(["ref_check_mod"])
