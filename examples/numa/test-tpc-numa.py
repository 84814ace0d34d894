#!/usr/bin/env python3
"""tpc-numa end to end, with small sizes (--quick): on this machine (every section printed, a
comparison of two placements, the JSON's shape, memory found on node 0 on a one-node machine,
the heat maps when gnuplot is there) and on the saved two-socket topology (tests/numa-2socket.xml:
shards, nodes, distances and matrices of the right shape). Usage: test-tpc-numa.py TPC_NUMA XML"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

exe, xml = sys.argv[1], sys.argv[2]
SECTIONS = ["== Topology", "== Shards", "== Round trip, target busy", "== Round trip, target asleep",
            "== One-way stream", "== Memory locality", "== Local against remote memory"]


def run(args, want=0):
    p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=120)
    if p.returncode != want:
        sys.exit(f"tpc-numa {' '.join(args)}: exit {p.returncode}, want {want}\n{p.stdout}\n{p.stderr}")
    return p


def square(m, n, what):
    assert len(m) == n and all(len(r) == n for r in m), f"{what}: not {n} x {n}: {m}"


def check_run(r, nodes):
    n = r["shards"]
    assert n == len(r["placement_of_shards"]), r["placement_of_shards"]
    for key in ("rtt_busy", "rtt_asleep"):
        square(r[key]["median_ns"], n, key)
        square(r[key]["p99_ns"], n, key)
        for med, p99 in zip(sum(r[key]["median_ns"], []), sum(r[key]["p99_ns"], [])):
            assert 0 < med <= p99, (key, med, p99)
    square(r["stream_msgs_per_s"], n, "stream")
    assert all(v > 0 for v in sum(r["stream_msgs_per_s"], []))
    assert len(r["locality"]) == n
    mem = r["memory"]
    assert len(mem["lat_ns"]) == n and all(len(row) == len(nodes) for row in mem["lat_ns"])
    assert all(v > 0 for v in sum(mem["lat_ns"], []) + sum(mem["gbps"], []))
    tree = r["topology"]["tree"]
    assert tree[0]["kind"] == "machine" and tree[0]["depth"] == 0
    for a, b in zip(tree, tree[1:]):
        assert 1 <= b["depth"] <= a["depth"] + 1, (a, b)
    on_pus = sorted(o["shard"] for o in tree if o["kind"] == "pu" and o["shard"] >= 0)
    assert on_pus == list(range(n)) or n > len(on_pus), on_pus


with tempfile.TemporaryDirectory() as tmp:
    # This machine, two placements compared.
    out = os.path.join(tmp, "here.json")
    p = run(["--quick", "--compare", "core", "--plots", tmp, "--json", out])
    for s in SECTIONS + ["######## Comparison", "geometric mean", "memory latency (columns: nodes)",
                         "JSON written to"]:
        assert s in p.stdout, f"no '{s}' in:\n{p.stdout}"
    doc = json.load(open(out))
    assert [r["name"] for r in doc["runs"]] == ["A", "B"]
    assert [r["placement"] for r in doc["runs"]] == ["pu", "core"]
    for r in doc["runs"]:
        check_run(r, r["topology"]["nodes"])
        if r["topology"]["nodes"] == [0]:  # one node: everything of every shard is on it
            for loc in r["locality"]:
                for kind in ("stacks", "rings", "heap", "local"):
                    w = loc[kind]
                    assert w["remote"] == 0 and (w["local"] > 0 or w["pages"] == w["absent"]), (kind, loc)
            assert all(v == 0 for v in sum(r["memory"]["found_node"], []))
    if shutil.which("gnuplot"):
        pngs = [f for f in os.listdir(tmp) if f.endswith(".png")]
        assert len(pngs) == 10, pngs  # five matrices, two runs
        assert "heat maps: 10 PNG files" in p.stdout, p.stdout
    else:
        assert "gnuplot not found" in p.stdout, p.stdout

    # The two-socket machine, one shard per core on two cores of each socket.
    out = os.path.join(tmp, "two.json")
    p = run(["--quick", "--topology", xml, "--placement", "core", "--cpus", "0,2,8,10", "--no-plots",
             "--json", out])
    assert "simulated: " + xml in p.stdout, p.stdout
    r = json.load(open(out))["runs"][0]
    check_run(r, [0, 1])
    t = r["topology"]
    assert t["simulated"] and t["distances_known"], t
    assert t["nodes"] == [0, 1] and t["packages"] == 2 and t["cores"] == 8 and t["pus"] == 16, t
    assert t["distances"] == [[10, 21], [21, 10]], t["distances"]
    assert [s["cpu"] for s in r["placement_of_shards"]] == [0, 2, 8, 10]
    assert [s["node"] for s in r["placement_of_shards"]] == [0, 0, 1, 1]
    assert [s["package"] for s in r["placement_of_shards"]] == [0, 0, 1, 1]
    assert [o["kind"] for o in t["tree"]].count("cache") == 18

    # Misuse: a clear message and a non-zero exit.
    p = run(["--rounds", "x"], want=2)
    assert "not a number" in p.stderr, p.stderr
    p = run(["--placement", "sideways", "--no-plots", "--json", os.path.join(tmp, "x.json")], want=1)
    assert "not one of pu, core, node" in p.stderr, p.stderr
    p = run(["--topology", "frobnicate:2", "--quick", "--no-plots", "--json", os.path.join(tmp, "x.json")],
            want=1)
    assert "TPC_TOPOLOGY" in p.stderr, p.stderr
    p = run(["--quick", "--plots", os.path.join(tmp, "no-such-dir")], want=2)  # before the run
    assert "no-such-dir: No such file or directory" in p.stderr, p.stderr
    p = run(["--quick", "--no-plots", "--json", os.path.join(tmp, "no-such-dir", "x.json")], want=1)
    assert "cannot write" in p.stderr, p.stderr
print("ok")
