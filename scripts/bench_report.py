#!/usr/bin/env python3
"""Summarises one benchmark run as the markdown tables BENCHMARKS.md is
written from: each benchmark's median, its rate (elements per second for
throughput benchmarks), and its ratio to the raw driver or physical floor
measured beside it in the same group (same parameter, e.g. the same number
of tasks), as time over the baseline's time.

usage: bench_report.py CRITERION_DIR [--since FILE] [--log BENCH_LOG]

--since FILE  only results written after FILE was (bench.sh touches it
              when the run starts, so nothing from an earlier run is mixed
              in)
--log LOG     also print the figures the benchmarks print themselves
              (percentiles, times to open, journal memory)
"""
import json
import os
import re
import sys

# The raw drivers and floors: the baseline of the group they are in.
RAW = {
    "rusqlite",
    "mysql_async",
    "memcache_async",
    "mysql_async_healthy",
    "mysql_async+memcache_async",
    "raw_group_commit",
    "mysql_raw_multirow_upsert_floor",
    "tokio_postgres",
    "tokio_postgres_multirow",
    "postgres_raw_multirow_upsert_floor",
}
# Groups without a raw driver: what their ratios are against.
BASELINE = {
    "read_through": "mysql",
    "dead_cache/read": "mysql_no_cache",
}
# Lines the benchmarks print beside criterion's output.
PRINTED = re.compile(r"^(outage|dead_cache|replay|journal_memory)/\S*:|^memcached deadline")


def args():
    argv = sys.argv[1:]
    root, since, log = "target/criterion", None, None
    i = 0
    while i < len(argv):
        if argv[i] == "--since":
            since, i = argv[i + 1], i + 2
        elif argv[i] == "--log":
            log, i = argv[i + 1], i + 2
        else:
            root, i = argv[i], i + 1
    return root, since, log


def fmt(ns):
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"


def load(root, since):
    cutoff = os.path.getmtime(since) if since else 0
    groups = {}
    for dirpath, _, filenames in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in filenames:
            continue
        estimates = os.path.join(dirpath, "estimates.json")
        if not os.path.exists(estimates) or os.path.getmtime(estimates) < cutoff:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(estimates) as f:
            median = json.load(f)["median"]["point_estimate"]
        elements = (bench.get("throughput") or {}).get("Elements")
        groups.setdefault(bench["group_id"], []).append(
            {
                "function": bench["function_id"] or "",
                "param": bench["value_str"] or "",
                "median": median,
                "elements": elements,
            }
        )
    return groups


def sort_param(p):
    return (0, int(p)) if p.isdigit() else (1, p)


def report(groups):
    for group in sorted(groups):
        rows = groups[group]
        baseline = {}
        for r in rows:
            if r["function"] in RAW or r["function"] == BASELINE.get(group):
                baseline[r["param"]] = r
        print(f"\n### {group}\n")
        print("| benchmark | median | per second | vs baseline (time) |")
        print("|---|---|---|---|")
        rows.sort(
            key=lambda r: (
                sort_param(r["param"]),
                baseline.get(r["param"]) is not r,
                r["function"],
            )
        )
        for r in rows:
            name = "/".join(x for x in (r["function"], r["param"]) if x)
            per_second = (r["elements"] or 1) * 1e9 / r["median"]
            base = baseline.get(r["param"])
            ratio = f"{r['median'] / base['median']:.2f}x" if base else ""
            if base is r:
                ratio = "1 (baseline)"
            print(f"| {name} | {fmt(r['median'])} | {per_second:,.0f} | {ratio} |")


def printed(log):
    print("\n### printed by the benchmarks\n")
    with open(log, errors="replace") as f:
        for line in f:
            if PRINTED.search(line):
                print(f"    {line.rstrip()}")


def main():
    root, since, log = args()
    report(load(root, since))
    if log:
        printed(log)


main()
