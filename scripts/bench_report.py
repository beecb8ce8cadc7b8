#!/usr/bin/env python3
"""Summarises criterion's results (target/criterion) as markdown tables:
medians, and each implementation's ratio to the raw driver of its group."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
RAW = {"rusqlite", "mysql_async", "memcache_async"}


def median_ns(path):
    with open(os.path.join(path, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]


def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


groups = {}
for dirpath, dirnames, filenames in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in filenames:
        bench = os.path.dirname(dirpath)
        rel = os.path.relpath(bench, root).split(os.sep)
        if rel[-1] == "report":
            continue
        group, name = "/".join(rel[:-1]), rel[-1]
        groups.setdefault(group, {})[name] = median_ns(bench)

for group in sorted(groups):
    impls = groups[group]
    raw = next((impls[n] for n in impls if n in RAW), None)
    print(f"\n### {group}\n")
    print("| implementation | median | per second | vs raw |")
    print("|---|---|---|---|")
    for name in sorted(impls, key=lambda n: (n not in RAW, n)):
        ns = impls[name]
        ratio = f"{ns / raw:.2f}x" if raw else ""
        print(f"| {name} | {fmt(ns)} | {1e9 / ns:,.0f} | {ratio} |")
