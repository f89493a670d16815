"""Build lorex's API reference (HTML, pdoc) and check it: ``python scripts/api_reference.py [OUT]`` (default docs/api).

The reference covers the package ``lorex`` and every public module under it (no ``_private`` module, no
``__main__``). It fails (exit status 1, each problem printed) when pdoc warns, or when a reST cross-reference in a
docstring (``:func:`x```, ``:class:`x```, ``:mod:`x```, ...) does not resolve: pdoc itself renders an unknown name as
plain code without a word, so the references are resolved here, as Sphinx would: the name as written, then relative to
the module (and class) that defines the documented object. tests/test_api_reference.py runs the same check.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
import warnings
from pathlib import Path

ROLE = re.compile(r":(?:py:)?(mod|func|data|const|class|meth|attr|exc|obj):`([^`]+)`")
# pdoc cannot resolve the string annotations of a NamedTuple's generated __init__ (mitmproxy/pdoc issue 765, open):
# that warning says nothing about lorex's docstrings, so it alone is let through, and only for a NamedTuple.
NAMEDTUPLE_INIT = re.compile(r"Error parsing type annotation .* for ([\w.]+)\.__init__\.")


def public_modules(package: str = "lorex") -> list[str]:
    """The module specifications for pdoc: the package, then each public module it does not already include."""
    import pdoc.extract

    root = importlib.import_module(package)
    names = [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
             if not any(p.startswith("_") for p in m.name.split("."))]
    specs, covered = [package], set(pdoc.extract.walk_specs([package]))
    for name in sorted(names):
        if name not in covered:
            specs.append(name)
            covered |= set(pdoc.extract.walk_specs([name]))
    return specs


def _longest_module(dotted: str):
    """(the longest importable module prefix of ``a.b.c``, the remaining names), or (None, all names)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:i])), parts[i:]
        except Exception:
            continue
    return None, parts


def resolve(dotted: str) -> bool:
    """Whether ``a.b.c`` names an importable module or an attribute (or dataclass/NamedTuple field) inside one."""
    obj, rest = _longest_module(dotted)
    if obj is None:
        return False
    for j, p in enumerate(rest):
        if hasattr(obj, p):
            obj = getattr(obj, p)
        elif j == len(rest) - 1 and (p in getattr(obj, "__dataclass_fields__", {})
                                     or p in getattr(obj, "__annotations__", {})):
            return True
        else:
            return False
    return True


def _docs(doc):
    yield doc
    for member in getattr(doc, "own_members", ()):
        yield from _docs(member)


def broken_references(modules) -> list[str]:
    """``object: :role:`name``` for each cross-reference in the modules' docstrings that resolves to nothing."""
    import pdoc.doc

    bad = []
    for modname in modules:
        for d in _docs(pdoc.doc.Module.from_name(modname)):
            home, qual = (d.modulename, "") if isinstance(d, pdoc.doc.Module) else d.taken_from
            for kind, name in ROLE.findall(d.docstring or ""):
                name = name.lstrip("~.").removesuffix("()")
                parts = qual.split(".") if qual else []
                scopes = [home] + [home + "." + ".".join(parts[:k]) for k in range(len(parts), 0, -1)]
                if not (resolve(name) or any(resolve(f"{s}.{name}") for s in scopes)):
                    bad.append(f"{d.fullname}: :{kind}:`{name}` does not resolve")
    return bad


def _namedtuple(dotted: str) -> bool:
    obj, rest = _longest_module(dotted)
    try:
        for p in rest:
            obj = getattr(obj, p)
    except AttributeError:
        return False
    return obj is not None and isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")


def build(out: Path, modules: list[str] | None = None) -> list[str]:
    """Write the HTML reference of ``modules`` (default :func:`public_modules`) into ``out``; returns the problems
    (pdoc's warnings, then unresolved cross-references), empty when the reference is clean."""
    import pdoc
    import pdoc.extract

    modules = modules or public_modules()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules, output_directory=Path(out))
        bad = broken_references(pdoc.extract.walk_specs(modules))
    problems = []
    for w in caught:
        m = NAMEDTUPLE_INIT.search(str(w.message))
        if m and _namedtuple(m.group(1)):
            continue
        problems.append(f"pdoc {w.category.__name__}: {w.message}")
    return sorted(set(problems)) + bad


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/api")
    problems = build(out)
    for p in problems:
        print(p)
    print(f"API reference in {out / 'index.html'}" + (f"; {len(problems)} problems" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
