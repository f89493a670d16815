"""Do two ``results.json`` of ``lorex reproduce`` hold the same numbers? Every value is compared, recursively, apart
from times (keys naming seconds) and what names the run rather than its results (the time it was written, the
command, argv, the output folder, ``jobs``).

Run by hand (not in CI):  python benchmarks/compare_results.py A/results.json B/results.json [--show 20]

Prints the first differing values with their paths and the number of differences; exits 1 when there are any.
"""

from __future__ import annotations

import argparse
import json
import sys

IGNORED = {"generated_utc", "command", "argv", "out", "jobs"}


def without_run_details(x):
    if isinstance(x, dict):
        return {k: without_run_details(v) for k, v in x.items() if "seconds" not in k and k not in IGNORED}
    if isinstance(x, list):
        return [without_run_details(v) for v in x]
    return x


def differences(a, b, path: str = ""):
    """(path, a's value, b's value) of every difference between two parsed JSON documents."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{path}/{k}", a.get(k, "(missing)"), b.get(k, "(missing)")
            else:
                yield from differences(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (u, v) in enumerate(zip(a, b)):
            yield from differences(u, v, f"{path}[{i}]")
    elif a != b:
        yield path, a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--show", type=int, default=20, help="print this many differences")
    args = ap.parse_args()
    a, b = (without_run_details(json.load(open(p))) for p in (args.a, args.b))
    found = list(differences(a, b))
    for path, u, v in found[: args.show]:
        print(f"{path}: {str(u)[:60]} | {str(v)[:60]}")
    print(f"{len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
