"""Copy trained optimizers into the package as the shipped population of a task.

    lorex train --task T --seeds 0 1 2 3 4 --out runs/T-population
    python scripts/ship_population.py T runs/T-population            # members seed-1 … seed-4 beside the reference
    python scripts/ship_population.py T runs/T-paper --preset paper  # a paper-preset run, as <T>/paper

The reference optimizer (``src/lorex/pretrained/<T>/``, member 0) is not touched; each other member's
``params.npz`` and ``optimizer.json`` go to ``src/lorex/pretrained/<T>/seed-<k>/``. Only finished runs (holding an
``optimizer.json``) are copied, and a member whose configuration differs from the reference's (other than its
seed) is refused.
"""

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from lorex.meta import MetaConfig

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "lorex" / "pretrained"
FILES = ("params.npz", "optimizer.json")


def config_without_seed(path: Path) -> str:
    """The digest of the run's meta-training config with its seed set to 0 (fields a run made before they existed
    take their defaults)."""
    cfg = MetaConfig.from_json(json.loads((path / "optimizer.json").read_text())["config"], str(path))
    return dataclasses.replace(cfg, seed=0).digest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task")
    p.add_argument("source", type=Path, help="a population folder (seed-<k> members) or, with --preset, a run folder")
    p.add_argument("--preset", default=None)
    args = p.parse_args()
    ref = PRETRAINED / args.task
    if args.preset:
        dest = ref / args.preset
        dest.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            shutil.copy2(args.source / f, dest / f)
        print(f"shipped {args.source} as {dest.relative_to(PRETRAINED)}")
        return
    want = config_without_seed(ref)
    for member in sorted(args.source.glob("seed-*")):
        seed = int(member.name.split("-", 1)[1])
        if seed == 0 or not (member / "optimizer.json").exists():
            continue
        if config_without_seed(member) != want:
            raise SystemExit(f"{member}: its configuration differs from the shipped reference's")
        dest = ref / f"seed-{seed}"
        dest.mkdir(exist_ok=True)
        for f in FILES:
            shutil.copy2(member / f, dest / f)
        print(f"shipped {member} as {dest.relative_to(PRETRAINED)}")


if __name__ == "__main__":
    main()
