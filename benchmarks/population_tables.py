"""Markdown tables of the population part of a `lorex reproduce` run, from its results.json.

    python benchmarks/population_tables.py lorex-report/results.json

Prints: per task, every member's margin over the best tuned baseline (mean log loss and final loss); the agreement
table (task × mechanism → k of n present, median [min, max] of the deciding number over members, and the reference
member's value with its 95 % interval); and the paper-preset optimizer's findings beside the reference's.
"""

import json
import sys


def fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def main(path):
    r = json.load(open(path))
    print("| task | seed | mean log loss (margin over best baseline) | final loss (margin) | training wall time |")
    print("|---|---|---|---|---|")
    for task, t in r["tasks"].items():
        pop = t.get("population")
        if not pop:
            continue
        for m in pop["members"]:
            cells = []
            for metric in ("mean_log_loss", "final_loss"):
                c = m["benchmark"]["comparison"][metric]
                cells.append(f"{fmt(c['learned'], '.4g')} vs {c['best_baseline']} {fmt(c['baseline'], '.4g')} "
                             f"({fmt(c['margin_in_se'], '.1f')} s.e.{', wins' if c['beats_by_2se'] else ''})")
            w = m.get("wall_seconds_training")
            print(f"| {task} | {m['seed']}{' (reference)' if m['reference'] else ''} | {cells[0]} | {cells[1]} | "
                  f"{fmt(w, '.0f')} s |")
        print(f"| {task} | wins by > 2 s.e. | {pop['wins']['mean_log_loss']} of {pop['n']} | "
              f"{pop['wins']['final_loss']} of {pop['n']} | |")
    print()
    ref = {(f["task"], f["mechanism"]): f for f in r["findings"]}
    print("| task | mechanism | members | median [min, max] over members | reference: value [95 % interval] |")
    print("|---|---|---|---|---|")
    for a in r["agreement"]:
        f = ref[(a["task"], a["mechanism"])]
        iv = f["interval_95"]
        ivs = "" if not iv or iv[0] is None else f" [{fmt(iv[0])}, {fmt(iv[1])}]"
        print(f"| {a['task']} | {a['mechanism']} | {a['summary']} | {fmt(a['median'])} [{fmt(a['min'])}, "
              f"{fmt(a['max'])}] | {f['verdict']}, {fmt(f['value'])}{ivs} |")
    for task, t in r["tasks"].items():
        p = t.get("paper")
        if not p:
            continue
        print(f"\nPaper preset on {task}: GRU-{p['lopt_config']['hidden']}, {p['meta_steps']} meta-steps")
        print("| mechanism | GRU-256 | reference |\n|---|---|---|")
        for f in p["findings"]:
            g = ref[(task, f["mechanism"])]
            print(f"| {f['mechanism']} | {f['verdict']}, {fmt(f['value'])} | {g['verdict']}, {fmt(g['value'])} |")
        for metric in ("mean_log_loss", "final_loss"):
            c = p["benchmark"]["comparison"][metric]
            print(f"{metric}: {fmt(c['learned'], '.4g')} vs {c['best_baseline']} {fmt(c['baseline'], '.4g')} "
                  f"({fmt(c['margin_in_se'], '.1f')} s.e.)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lorex-report/results.json")
