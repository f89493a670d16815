"""The package is layered: a module imports only from its own layer or below, never upward (no import cycles).

cli / api → report → distill → mechanisms → analysis → lopt / tasks / evaluate / meta / baselines / benchmark →
io / errors / seeds / plotting / progress.  Every import counts, including those inside functions.
"""

import ast
from pathlib import Path

import lorex

ROOT = Path(lorex.__file__).parent
LAYERS = [
    {"errors", "io", "seeds", "plotting", "progress"},
    {"tasks", "lopt", "evaluate", "meta", "baselines", "benchmark", "resources"},
    {"analysis"},
    {"mechanisms"},
    {"distill"},
    {"report"},
    {"cli", "api", "__init__", "__main__"},
]


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"lorex.{top} is in no layer: add it to LAYERS")


def imported_lorex_modules(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lorex."):
                    yield a.name.split(".")[1]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "lorex":
                continue
            if len(parts) > 1:
                yield parts[1]
            else:  # from lorex import x, y
                yield from (a.name for a in node.names)


def test_no_module_imports_upward():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        own = rel.parts[0].removesuffix(".py")
        for top in imported_lorex_modules(path):
            if top in ("__version__", "LorexError"):
                continue
            if layer_of(top) > layer_of(own):
                bad.append(f"{rel} imports lorex.{top}")
    assert not bad, "upward imports: " + "; ".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from lorex.report import figures\n    import lorex.cli\n")
    assert sorted(imported_lorex_modules(f)) == ["cli", "report"]
