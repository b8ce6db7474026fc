#!/usr/bin/env python3
"""Prints the zero-downtime benchmark's table from the case directories run.sh wrote
(python3 standard library only).

    table.py [--hosts N] [--clients C] RESULTS_DIR

Each RESULTS_DIR/case-NN/ holds meta.json (what ran, its exit status, what was expected, the
run's start and end as Unix seconds), load.json (load.py's tally) and report.json (dropship's
--json report). Exit status 0 when every zero-downtime row met its target (0 failed requests,
0 db errors, every host on the expected version at the end, the expected exit status), 3
otherwise.

Per host, "switch" is the blue_green step's own measure (`switched in …` in its detail: file
written → nginx reloaded); for a playbook without one it is the `start stack` step's time
(`up …`: compose recreating the containers, the window in which requests fail). "flip" is
when the load first saw the expected version on that host, in seconds from the run's start.
"""
import argparse
import json
import os
import re
import sys

SWITCHED = re.compile(r"switched in ([0-9.]+)\s*(ms|s)\b")


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def switch_of(host):
    """The switch time of one host's entry in dropship's report, as table text."""
    steps = host.get("steps") or []
    for step in steps:
        m = SWITCHED.search(step.get("detail") or "")
        if m:
            value = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            return "%.2f" % value
    for step in steps:
        if step.get("outcome") == "failed":
            return "FAILED"
    for step in steps:
        # `rollback: start stack` in a rollback's re-run steps.
        if step.get("name", "").split(": ")[-1] == "start stack" and step.get("outcome") == "changed":
            return "up %.1f" % (step.get("elapsed_ms", 0) / 1000)
    if host.get("error"):
        return "FAILED"
    if host.get("note"):
        return "-"
    return "ok"


def row(case_dir, names):
    meta = load(os.path.join(case_dir, "meta.json"))
    if meta is None:
        return None
    tally = load(os.path.join(case_dir, "load.json")) or {"hosts": {}}
    report = load(os.path.join(case_dir, "report.json")) or {"hosts": []}
    by_name = {h.get("host"): h for h in report.get("hosts", [])}
    hosts = tally["hosts"]
    ok = sum(h["ok"] for h in hosts.values())
    failed = sum(h["failed"] for h in hosts.values())
    db_errors = sum(h.get("db_errors", 0) for h in hosts.values())
    want = meta["want_version"]
    switches, flips, after, outages = [], [], [], []
    for name in names:
        h = hosts.get(name, {})
        after.append(h.get("last_version") or "-")
        first = next((t for t, v in h.get("flips", []) if v == want), None)
        before = h.get("flips", [[0, None]])[0][1]
        if before == want:
            flips.append("=")
        elif first is None:
            flips.append("-")
        else:
            flips.append("%.1f" % (first - meta["t0"]))
        switches.append(switch_of(by_name[name]) if name in by_name else "-")
        if h.get("first_failures") and h.get("last_failure"):
            outages.append("%.1f" % (h["last_failure"][0] - h["first_failures"][0][0]))
        else:
            outages.append("0")
    met = failed == 0 and db_errors == 0 and meta["exit"] == meta["want_exit"] and all(v == want for v in after)
    reasons = {}
    for h in hosts.values():
        for why, n in h.get("reasons", {}).items():
            reasons[why] = reasons.get(why, 0) + n
    return {
        "case": meta["label"],
        "playbook": meta["playbook"],
        "exit": "%d (want %d)" % (meta["exit"], meta["want_exit"]),
        "ok": str(ok),
        "failed": str(failed),
        "db": str(db_errors),
        "wall": "%.1f" % (meta["t1"] - meta["t0"]),
        "switch": " ".join(switches),
        "flip": " ".join(flips),
        "outage": " ".join(outages),
        "after": " ".join(after) + " (want %s)" % want,
        "verdict": ("PASS" if met else "MISS") + (" (comparison)" if meta["comparison"] else ""),
        "met": met or meta["comparison"],
        "reasons": reasons,
    }


COLUMNS = [
    ("case", "case"), ("playbook", "playbook"), ("exit", "exit"), ("ok", "requests ok"),
    ("failed", "failed"), ("db", "db errors"), ("outage", "failing s per host"), ("wall", "run s"),
    ("switch", "switch s per host"),
    ("flip", "flip s per host"), ("after", "version after"), ("verdict", "verdict"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("results")
    args = parser.parse_args()
    names = ["zdb-%d" % k for k in range(1, args.hosts + 1)]
    cases = sorted(d for d in os.listdir(args.results) if d.startswith("case-"))
    rows = [r for r in (row(os.path.join(args.results, d), names) for d in cases) if r]
    print("zero-downtime benchmark: %d hosts, %d clients per host looping GET / through nginx "
          "(one connection per request, failed = non-200, connection error or > 5 s)"
          % (args.hosts, args.clients))
    print()
    widths = {k: max(len(title), *(len(r[k]) for r in rows)) for k, title in COLUMNS} if rows else {}
    print("  ".join(title.ljust(widths.get(k, 0)) for k, title in COLUMNS).rstrip())
    for r in rows:
        print("  ".join(r[k].ljust(widths[k]) for k, _ in COLUMNS).rstrip())
    print()
    print("switch: the blue_green step's file written → nginx reloaded (`up N`: deploy.toml's or")
    print("release.toml's compose up of the stack); failing: first to last failed request; flip: first")
    print("answer with the expected version, s after dropship started (`=`: served it already, `-`:")
    print("never); FAILED: the host's run failed (as expected for the broken releases); db errors:")
    print("answers 200 whose `db=` line was not ok (the app's database did not answer).")
    failing = [r for r in rows if r["reasons"]]
    if failing:
        print()
        print("failed requests by reason:")
        for r in failing:
            print("  %s, %s: %s" % (r["case"], r["playbook"], ", ".join(
                "%s × %d" % (why, n) for why, n in sorted(r["reasons"].items(), key=lambda x: -x[1]))))
    missed = [r for r in rows if not r["met"]]
    if missed:
        print()
        print("MISSED: " + "; ".join("%s (%s)" % (r["case"], r["playbook"]) for r in missed))
    return 3 if missed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
