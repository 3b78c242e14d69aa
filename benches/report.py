#!/usr/bin/env python3
"""Prints criterion's medians for `cargo bench --bench classify` as a Markdown table, with
each member's ratio to `ours` in the same group (and row); in the `relay` group the reference
is `steps`. Reads target/criterion."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
for est in root.glob("**/new/estimates.json"):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    group, member = bench["group_id"], bench["function_id"]
    param = bench.get("value_str") or ""
    if member is None:  # BenchmarkId::from_parameter: the member is the parameter
        member, param = param, ""
    median = json.loads(est.read_text())["median"]["point_estimate"]  # ns
    tp = bench.get("throughput") or {}
    rows.setdefault((group, param), {})[member] = (median, tp.get("Bytes"))


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


order = ["ours", "steps", "sync_memory", "ours_lenient", "naive", "regex", "trim_floor", "classify"]
print("| group | input | member | median | throughput | time / ours (steps) |")
print("|---|---|---|---|---|---|")
for (group, param), members in sorted(rows.items()):
    base = members.get("ours", members.get("steps", (None,)))[0]
    for m in sorted(members, key=lambda m: order.index(m) if m in order else 99):
        ns, nbytes = members[m]
        gbps = f"{nbytes / ns:.2f} GB/s" if nbytes else ""
        ratio = f"{ns / base:.2f}×" if base else ""
        print(f"| {group} | {param} | {m} | {fmt(ns)} | {gbps} | {ratio} |")
