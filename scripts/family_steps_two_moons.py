"""Usage: python scripts/family_steps_two_moons.py N_STEPS OUT.json

How many family meta-steps does two moons need? Train the full family from the tuned Momentum start (3 seeds,
the bound's FamilyConfig otherwise) for N meta-steps, validating every 20; print the validation history."""
import json
import sys
import time

from lorex import seeds, tasks
from lorex.baselines import tune
from lorex.distill import bound as B, family as F

N = int(sys.argv[1])
fam = tasks.make("two_moons")
T = fam.steps
t0 = time.time()
mom = tune("momentum", fam, seeds.keys(0, "tuning", 8), T)
print("tuned momentum", mom.learning_rate, mom.second, f"{time.time() - t0:.0f}s", flush=True)
start = B.start_from_baseline("momentum", {"learning_rate": mom.learning_rate, "momentum": mom.second})
(start,) = B.set_clipping_threshold([start], fam, seeds.keys(0, "meta_train", 8), T, 3.0)
fc = B.default_family_config(fam, steps=N, val_every=20)
tcfg = B.family_task_config(fam, T)
tr = B.train_members(fam, tcfg, [start] * 3, [F.full_mask()] * 3, [0, 1, 2], fc,
                     progress=lambda m: print(m, f"{time.time() - t0:.0f}s", flush=True))
print("start validation", tr["start_validation"])
print("best validation", tr["validation"], "best step", tr["best_step"])
for k, v in tr["validation_history"]:
    print(k, [round(x, 4) for x in v])
json.dump({"history": tr["validation_history"], "best_step": tr["best_step"], "validation": tr["validation"],
           "start_validation": tr["start_validation"], "wall": tr["wall_seconds"], "config": str(fc)},
          open(sys.argv[2], "w"))
