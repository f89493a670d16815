"""Ship the mechanism family trained by ``lorex distill`` so that ``lorex reproduce`` only evaluates it.

    lorex distill --optimizer T --bound-only --out runs/T-distill
    python scripts/ship_mechanism_family.py runs/T-distill/distill.json   # -> src/lorex/pretrained/T/mechanism_family.json

Only the chosen member of each variant (the bound and each leave-one-out variant) is written, with how the family
was trained (lorex.distill.bound.family_record).
"""

import argparse
import json
from pathlib import Path

from lorex.distill.bound import FAMILY_FILE, load_family, save_family

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "lorex" / "pretrained"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("distill_json", type=Path)
    args = p.parse_args()
    result = json.loads(args.distill_json.read_text())
    if "mechanism_bound" not in result:
        raise SystemExit(f"{args.distill_json} holds no mechanism bound (run lorex distill without --no-bound)")
    if result["optimizer"]["source"] != result["task"]:
        raise SystemExit(f"{args.distill_json} distils {result['optimizer']['source']!r}, not the shipped optimizer "
                         f"of {result['task']!r}")
    out = PRETRAINED / result["task"] / FAMILY_FILE
    save_family(out, result)
    load_family(out)  # what was written reads back
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
