"""Do two ``results.json`` of ``lorex reproduce`` hold the same numbers? Every value is compared, recursively, apart
from times (keys naming seconds) and what names the run rather than its results (the time it was written, the
command, argv, the output folder, ``jobs``).

Run by hand (not in CI):  python benchmarks/compare_results.py A/results.json B/results.json [--show 20] [--by-size]

Prints the first differing values with their paths and the number of differences; exits 1 when there are any.
``--by-size`` also counts the numeric differences by relative size, |a − b| / |a|: within 1e-5, up to 1 %, and 1 % or
more (a = 0 counts as 1 % or more).
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
    ap.add_argument("--by-size", action="store_true", help="count numeric differences by relative size")
    args = ap.parse_args()
    a, b = (without_run_details(json.load(open(p))) for p in (args.a, args.b))
    found = list(differences(a, b))
    for path, u, v in found[: args.show]:
        print(f"{path}: {str(u)[:60]} | {str(v)[:60]}")
    print(f"{len(found)} differences")
    if args.by_size:
        rel = [abs(u - v) / abs(u) if u else float("inf") for _, u, v in found
               if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (u, v))]
        small, large = sum(r <= 1e-5 for r in rel), sum(r >= 1e-2 for r in rel)
        print(f"{len(rel)} numeric: {small} within 1e-5 (relative), {len(rel) - small - large} up to 1 %, "
              f"{large} 1 % or more")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
