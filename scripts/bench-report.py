#!/usr/bin/env python3
"""The workload table of scripts/bench.sh, and its report.

  bench-report.py plan [ID...]           the selected workloads, "<group> <id>" per line
                                         (all ids if none given; exit 2 on an unknown id)
  bench-report.py report RAW OUTDIR      reads RAW (lines "<round> <group> <impl> bench <id>
                                         <value> <unit> | <conditions>", round 0 = warm-up,
                                         ignored), prints one table, writes OUTDIR/latest.json,
                                         OUTDIR/latest-machine.json and the chart's data and
                                         gnuplot script (OUTDIR/latest.dat, latest.gp)
  bench-report.py markdown OUTDIR        the table of OUTDIR/latest.json as Markdown, with the
                                         machine and date (for docs/benchmarks.md)

Each workload names the benchmark group that measures it and, per implementation, the output
line that carries its figure: (impl, bench id, regex the conditions must match or None, regex
whose group 1 in the conditions is the value or None for the line's own value[, the runner's
tag of the process that prints the line, if not impl: "net" for bench/net.sh, "libtpc" for fio's
figures, which bench-file prints]).

Variants: a peer may print one id several times per run, once per configuration of itself (the
Tokio peers: current_thread or multi_thread runtime, with or without the I/O and time drivers).
Such a line's conditions start with its variant in a fixed form, "<anything>, drivers: <list>"
(VARIANT_RE). The report takes each variant's median over the rounds and gives the best one
(lowest for lower-is-better units, highest otherwise) as the peer's figure, with that variant's
spread and rounds; latest.json names the winner in "variants", keeps every variant's median in
"variant_medians" and lists in "variants_left_out" those whose lines a source's condition regex
refused; the table says which variant won.

Settings: a row measures libtpc's shipped defaults (a release build, no TPC_* variable) unless
its id ends in a suffix of TUNED ("-tuned", "-lto"); such a row reads libtpc's figure from the
runner's other process (net.sh's tpc-tuned server, the "libtpc-lto" tag) and the peers' from
the same lines as the default row. latest.json gives it a "setting", and the tables say it.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

PEERS = ["tokio", "libuv", "epoll", "fio", "nginx", "haproxy", "redis"]
LOWER = {"ns", "ns/op", "ns/iteration", "us/req", "us/rtt", "ms", "us", "bytes"}  # lower is better
VARIANT_RE = re.compile(r"^(.*?, drivers: [^,]+)")  # a line's variant: see the docstring
# The Tokio cross-thread lines say how often A and B really ran on different threads; with a
# multi_thread runtime the round trips run both tasks on one worker (0%), which is not the
# cross-thread workload, so a line counts unless it says that fewer than half of them crossed.
CROSSED = r"^(?!.*on different threads: [1-4]?[0-9]% )"


# net.sh's servers: all for HTTP; nginx and haproxy answer HTTP only.
ECHO = ("tpc", "epoll", "tokio", "libuv")


def net(metric, servers=("tpc", "epoll", "tokio", "nginx", "libuv", "haproxy"), ours="tpc"):
    """net.sh prints one id per server: net_<metric> with the server's name spliced in. libtpc's
    figure is server `ours`: tpc (the shipped defaults), tpc-tuned or tpc-ep (epoll)."""
    out = []
    for s in servers:
        if s == "tpc":
            out.append(("libtpc", metric.replace("@", ours), None, None, "net"))
        else:
            out.append((s, metric.replace("@", s), None, None, "net"))
    return out


def proxy(metric):
    """bench/proxy.sh prints proxy_<mode>_<proxy>[_suffix] for tpc-proxy, HAProxy and nginx."""
    return [(impl, metric.replace("@", name), None, None, "proxy")
            for impl, name in (("libtpc", "tpc"), ("haproxy", "haproxy"), ("nginx", "nginx"))]


def kv(metric):
    """bench/kv.sh prints <metric> with "@" replaced by tpc (tpc-kv) and redis (redis-server)."""
    return [(impl, metric.replace("@", name), None, None, "kv")
            for impl, name in (("libtpc", "tpc"), ("redis", "redis"))]


# redis-benchmark's default run, the tests of bench/kv.sh
KV_TESTS = ("ping_inline ping_mbulk set get incr lpush rpush lpop rpop sadd hset spop zadd "
            "zpopmin lrange_100 lrange_300 lrange_500 lrange_600 mset").split()


def file(bid, unit="IOPS"):
    fio = r"median ([0-9.]+) " + re.escape(unit)
    return [("libtpc", bid, None, None), ("fio", bid, None, fio, "libtpc")]


# id, unit, group, sources; the ids first, then extras, then the rows of settings other
# than the shipped defaults (TUNED). Every other row measures libtpc as shipped: a plain release
# build, no TPC_* environment variable.
WORKLOADS = [
    ("yield", "ns/op", "core", [("libtpc", "yield", None, None), ("tokio", "yield", None, None)]),
    ("spawn_join", "ns/op", "core",
     [("libtpc", "spawn_join", None, None), ("tokio", "spawn_join", None, None)]),
    ("chan_pingpong", "ns/op", "core",
     [("libtpc", "chan_pingpong", None, None), ("tokio", "chan_pingpong", None, None)]),
    ("timers_1m", "ms", "timer",
     [("libtpc", "timers_1m", None, None), ("libuv", "timers_1m", None, None)]),
    ("timer_churn", "ns/op", "timer",
     [("libtpc", "timer_churn", None, None), ("libuv", "timer_churn", None, None)]),
    ("idle_loop", "ns/iteration", "idle",
     [("libtpc", "idle_loop", r"^2 shards", None), ("libuv", "idle_loop", None, None),
      ("tokio", "idle_loop", None, None)]),
    ("xshard_stream", "msg/s", "xshard",
     [("libtpc", "xshard_stream", None, None), ("tokio", "tokio_xshard_stream", CROSSED, None)]),
    ("xshard_rtt", "ns", "xshard",
     [("libtpc", "xshard_rtt", None, None), ("tokio", "tokio_xshard_rtt_p50", CROSSED, None),
      ("libuv", "xshard_rtt", None, None)]),
    ("wakeup", "ns", "xshard",
     [("libtpc", "wakeup", None, None), ("tokio", "tokio_xshard_wakeup_p50", CROSSED, None),
      ("libuv", "wakeup", None, None)]),
    ("http_plain_cpu", "us/req", "net", net("net_http_@_cpu")),
    ("http_plain_rps", "req/s", "net", net("net_http_@")),
    ("http_pipelined_cpu", "us/req", "net", net("net_http_pipe16_@_cpu")),
    ("http_pipelined_rps", "req/s", "net", net("net_http_pipe16_@")),
    ("echo_pingpong", "ops/s", "net", net("net_echo_rtt_1_@", ECHO)),
    ("echo_pingpong_cpu", "us/rtt", "net", net("net_echo_rtt_1_@_cpu", ECHO)),
    ("echo_8conn", "ops/s", "net", net("net_echo_rtt_8_@", ECHO)),
    ("echo_16conn", "ops/s", "net", net("net_echo_rtt_16_@", ECHO)),
    ("echo_32conn", "ops/s", "net", net("net_echo_rtt_32_@", ECHO)),
    ("file_randread_qd1", "IOPS", "file", file("file_randread_qd1_direct")),
    ("file_randread_qd32", "IOPS", "file", file("file_randread_qd32_direct")),
    ("file_randread_qd128", "IOPS", "file", file("file_randread_qd128_direct")),
    ("file_randread_qd32_fixed", "IOPS", "file", file("file_randread_qd32_direct_fixed")),
    ("file_randread_qd128_fixed", "IOPS", "file", file("file_randread_qd128_direct_fixed")),
    ("file_randread_qd1_buffered", "IOPS", "file", file("file_randread_qd1_buffered")),
    ("file_randread_qd32_buffered", "IOPS", "file", file("file_randread_qd32_buffered")),
    ("file_randread_qd128_buffered", "IOPS", "file", file("file_randread_qd128_buffered")),
    ("proxy_tcp_cpu", "us/req", "proxy", proxy("proxy_tcp_@_cpu")),
    ("proxy_tcp_rps", "req/s", "proxy", proxy("proxy_tcp_@")),
    ("proxy_tcp_p99", "us", "proxy", proxy("proxy_tcp_@_p99")),
    ("proxy_tcp_idle_bytes", "bytes", "proxy", proxy("proxy_tcp_@_idle_bytes")),
    ("proxy_http_cpu", "us/req", "proxy", proxy("proxy_http_@_cpu")),
    ("proxy_http_rps", "req/s", "proxy", proxy("proxy_http_@")),
    ("proxy_http_p99", "us", "proxy", proxy("proxy_http_@_p99")),
    ("proxy_http_idle_bytes", "bytes", "proxy", proxy("proxy_http_@_idle_bytes")),
    ("proxy_close_cpu", "us/req", "proxy", proxy("proxy_close_@_cpu")),
    ("proxy_close_rps", "req/s", "proxy", proxy("proxy_close_@")),
    ("idle_conn_bytes", "bytes", "idleconn",
     [(impl, "idle_conn_bytes_" + name, None, None, "idleconn")
      for impl, name in (("libtpc", "tpc"), ("tokio", "tokio"), ("nginx", "nginx"))]),
    # issue 17: bench/kv.sh, tpc-kv against redis-server under redis-benchmark -c 50, all tests
    # of its default run (per depth: every test's requests over their server CPU or elapsed time)
    ("kv_p1_cpu", "us/req", "kv", kv("kv_p1_@_cpu")),
    ("kv_p1_rps", "req/s", "kv", kv("kv_p1_@")),
    ("kv_p16_cpu", "us/req", "kv", kv("kv_p16_@_cpu")),
    ("kv_p16_rps", "req/s", "kv", kv("kv_p16_@")),
    ("kv_always_p1_rps", "req/s", "kv", kv("kv_always_p1_@")),
    ("kv_always_p16_rps", "req/s", "kv", kv("kv_always_p16_@")),
    ("kv_everysec_p1_rps", "req/s", "kv", kv("kv_everysec_p1_@")),
    ("kv_everysec_p16_rps", "req/s", "kv", kv("kv_everysec_p16_@")),
    ("kv_mem_bytes", "bytes", "kv", kv("kv_mem_@")),
]
# The rows above are the headline ones, and the chart's; the extras below add detail.
CHARTED = {w[0] for w in WORKLOADS}
WORKLOADS += [
    ("timers_1m_insert", "ns/op", "timer",
     [("libtpc", "timers_1m_insert", None, None), ("libuv", "timers_1m_insert", None, None)]),
    ("timers_1m_fire_cpu", "ns/op", "timer",
     [("libtpc", "timers_1m_fire_cpu", None, None), ("libuv", "timers_1m_fire_cpu", None, None)]),
    ("idle_loop_32shards", "ns/iteration", "idle", [("libtpc", "idle_loop", r"^32 shards", None)]),
    ("xchan_stream", "msg/s", "xshard",
     [("libtpc", "xchan_stream", None, None), ("tokio", "tokio_xshard_stream", CROSSED, None)]),
    ("http_plain_sys", "us/req", "net", net("net_http_@_sys")),
    ("http_pipelined_sys", "us/req", "net", net("net_http_pipe16_@_sys")),
    ("echo_100conn", "ops/s", "net", net("net_echo_rtt_100_@", ECHO)),
    ("file_seqwrite", "MB/s", "file", file("file_seqwrite", "MB/s")),
    # issue 25: bench/bench-storage.c (group commit against fio's append + fdatasync; how late a
    # 1 ms sleep wakes on a committing shard, io-wq placed by default or on the shard's CPU)
    ("file_durable_append", "commits/s", "storage",
     file("file_durable_append", "commits/s")),
    ("timer_late_committing", "us", "storage",
     [("libtpc", "timer_late_committing", None, None)]),
    ("timer_late_committing_iowq_shard", "us", "storage",
     [("libtpc", "timer_late_committing_iowq_shard", None, None)]),
    ("timer_late_committing_iowq_bounded", "us", "storage",
     [("libtpc", "timer_late_committing_iowq_bounded", None, None)]),
    ("timer_late_neighbour", "us", "storage", [("libtpc", "timer_late_neighbour", None, None)]),
    ("timer_late_neighbour_iowq_shard", "us", "storage",
     [("libtpc", "timer_late_neighbour_iowq_shard", None, None)]),
] + [("file_durable_append_" + _m, "commits/s", "storage",
      file("file_durable_append_" + _m, "commits/s"))
     for _m in ("fdatasync", "falloc_fdatasync", "dsync", "falloc_dsync", "zeroed_fdatasync",
                "zeroed_dsync")]
# tpc-kv per test: the server's CPU per request at each depth; with persistence, CPU per request
WORKLOADS += [(f"kv_{_t}_p{_p}_cpu", "us/req", "kv", kv(f"kv_{_t}_p{_p}_@_cpu"))
              for _p in (1, 16) for _t in KV_TESTS]
WORKLOADS += [(f"kv_{_f}_p{_p}_cpu", "us/req", "kv", kv(f"kv_{_f}_p{_p}_@_cpu"))
              for _f in ("always", "everysec") for _p in (1, 16)]
# Settings other than the defaults, a row each, named by the id's suffix. The peers are the same.
TUNED = {
    "-tuned": "libtpc's servers with TPC_SPIN_NS=-1 (no spinning before sleeping)",
    "-nobatch": "libtpc's servers with wake-up batching off (TPC_COALESCE_US=-1)",
    "-lto": "bench-idle built with link-time optimisation (-Db_lto=true)",
    "-epoll": "libtpc's servers on the epoll backend (TPC_BACKEND=epoll, TPC_SPIN_NS=-1)",
}
NET = {  # net workloads: id -> (metric, servers)
    "http_plain_cpu": ("net_http_@_cpu", None), "http_plain_rps": ("net_http_@", None),
    "http_pipelined_cpu": ("net_http_pipe16_@_cpu", None),
    "http_pipelined_rps": ("net_http_pipe16_@", None),
    "echo_pingpong": ("net_echo_rtt_1_@", ECHO), "echo_pingpong_cpu": ("net_echo_rtt_1_@_cpu", ECHO),
    "echo_100conn": ("net_echo_rtt_100_@", ECHO),
    "echo_8conn": ("net_echo_rtt_8_@", ECHO), "echo_16conn": ("net_echo_rtt_16_@", ECHO),
    "echo_32conn": ("net_echo_rtt_32_@", ECHO),
}
for _w in list(WORKLOADS):
    if _w[0] in NET:
        _m, _s = NET[_w[0]]
        for _suffix, _ours in (("-tuned", "tpc-tuned"), ("-epoll", "tpc-ep"), ("-nobatch", "tpc-nb")):
            WORKLOADS.append((_w[0] + _suffix, _w[1], "net",
                              net(_m, _s, ours=_ours) if _s else net(_m, ours=_ours)))
WORKLOADS.append(("idle_loop-lto", "ns/iteration", "idle",
                  [("libtpc", "idle_loop", r"^2 shards", None, "libtpc-lto"),
                   ("libuv", "idle_loop", None, None), ("tokio", "idle_loop", None, None)]))
BY_ID = {w[0]: w for w in WORKLOADS}


def setting(wid):
    """What a row measures other than the shipped defaults, or None."""
    for suffix, text in TUNED.items():
        if wid.endswith(suffix):
            return text
    return None


def plan(ids):
    for i in ids:
        if i not in BY_ID:
            print(f"bench-report.py: unknown workload id '{i}'; known: {' '.join(BY_ID)}",
                  file=sys.stderr)
            sys.exit(2)
    for w in WORKLOADS:
        if not ids or w[0] in ids:
            print(w[2], w[0])


def si(v):
    """A value in 3-4 significant digits with a k/M/G suffix for large numbers."""
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(v) >= div:
            div = 1e3 if suf == "k" else div
            return f"{v / div:.3g}{suf}" if v / div < 1000 else f"{v / div:.0f}{suf}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def short_variant(impl, variant):
    """A variant without its leading "<impl> <version> " (the same for all of them)."""
    if variant is None:  # lines without a variant among lines with one
        return "(no variant)"
    return re.sub(r"^" + re.escape(impl) + r" [0-9][^ ,]* ", "", variant)


def machine_info():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_end": os.getloadavg(),
        "commit": commit,
    }


def report(raw, outdir, meta):
    # values[(id, impl)][variant] = [per-round values] (variant None for a line without one);
    # conds[(id, impl, variant)] = its last conditions text
    # left_out[(id, impl)] = variants whose lines the source's condition regex refused
    values, conds, left_out, seen_rounds = {}, {}, {}, set()
    lines = [l.rstrip("\n") for l in open(raw)]
    parsed = []
    for l in lines:
        m = re.match(r"^(\d+) (\S+) (\S+) bench (\S+) (\S+) (\S+) \| ?(.*)$", l)
        if m:
            parsed.append(m.groups())
    selected = [w for w in WORKLOADS if w[2] in meta["groups"] and
                (not meta["ids"] or w[0] in meta["ids"])]
    for wid, unit, group, sources in selected:
        for impl, bid, cond_re, val_re, *tag in sources:
            if group == "net" and impl in meta["absent"]:
                continue
            tag = tag[0] if tag else impl  # the runner's tag of the process that printed it
            for rnd, g, t, id_, val, _, cond in parsed:
                if g != group or t != tag or id_ != bid or rnd == "0":
                    continue
                if cond_re and not re.search(cond_re, cond):
                    vm = VARIANT_RE.match(cond)
                    if vm:
                        left_out.setdefault((wid, impl), set()).add(vm.group(1))
                    continue
                if val_re:
                    m = re.search(val_re, cond)
                    if not m:
                        continue
                    val = m.group(1)
                v = float(val)
                if v <= 0:  # bench-file reports -1 for a failed fio run
                    continue
                seen_rounds.add(rnd)
                vm = VARIANT_RE.match(cond)
                variant = vm.group(1) if vm else None
                values.setdefault((wid, impl), {}).setdefault(variant, []).append(v)
                conds[(wid, impl, variant)] = cond

    def best(wid, impl, lower):
        """(values, variant, {variant: median}) of the best variant, or (None, None, {})."""
        by_variant = values.get((wid, impl))
        if not by_variant:
            return None, None, {}
        meds = {k: statistics.median(v) for k, v in by_variant.items()}
        pick = (min if lower else max)(meds, key=meds.get)
        return by_variant[pick], pick, meds

    results, warnings = [], []
    peers_used = [p for p in PEERS if any(k[1] == p for k in values)]
    rows = []
    for wid, unit, group, sources in selected:
        lower = unit in LOWER
        ours, ours_variant, ours_meds = best(wid, "libtpc", lower)
        obj = {"id": wid, "unit": unit, "lower_is_better": lower,
               "libtpc": statistics.median(ours) if ours else None, "peers": {},
               "ratio": {}, "spread": {}, "rounds": {}, "conditions": {}}
        if setting(wid):
            obj["setting"] = setting(wid)
        if ours:
            obj["spread"]["libtpc"] = [min(ours), max(ours)]
            obj["rounds"]["libtpc"] = len(ours)
        else:
            warnings.append(f"{wid}: no libtpc figure")
        for impl, *_ in sources:
            if group == "net" and impl in meta["absent"]:
                continue
            v, variant, meds = (ours, ours_variant, ours_meds) if impl == "libtpc" else \
                best(wid, impl, lower)
            if v:
                obj["conditions"][impl] = conds[(wid, impl, variant)]
            if variant is not None:
                obj.setdefault("variants", {})[impl] = variant
                obj.setdefault("variant_medians", {})[impl] = meds
            gone = sorted(left_out.get((wid, impl), set()) - set(meds))
            if gone:
                obj.setdefault("variants_left_out", {})[impl] = gone
            if impl == "libtpc":
                continue
            if not v:
                warnings.append(f"{wid}: no figure from {impl}")
                continue
            med = statistics.median(v)
            obj["peers"][impl] = med
            obj["spread"][impl] = [min(v), max(v)]
            obj["rounds"][impl] = len(v)
            if ours:
                obj["ratio"][impl] = (med / obj["libtpc"]) if lower else (obj["libtpc"] / med)
        results.append(obj)
        rows.append(obj)

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "latest.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    mach = machine_info()
    mach.update({"rounds": meta["rounds"], "warmup_rounds": meta["warmup_rounds"],
                 "peers_left_out": meta["absent"], "quick": meta["quick"],
                 "durations": meta["durations"]})
    with open(os.path.join(outdir, "latest-machine.json"), "w") as f:
        json.dump(mach, f, indent=1)
        f.write("\n")

    # The table: one row per workload, per peer its median, spread and ratio.
    def cell(obj, impl):
        if impl == "libtpc":
            med, sp = obj["libtpc"], obj["spread"].get("libtpc")
        else:
            med, sp = obj["peers"].get(impl), obj["spread"].get(impl)
        if med is None:
            return "—"
        s = f"{si(med)} [{si(sp[0])}–{si(sp[1])}]"
        if impl != "libtpc" and impl in obj["ratio"]:
            s += f" x{obj['ratio'][impl]:.2f}"
        return s

    head = ["workload", "unit", "libtpc"] + peers_used
    table = [head] + [[o["id"], o["unit"]] + [cell(o, i) for i in ["libtpc"] + peers_used]
                      for o in rows]
    width = [max(len(r[c]) for r in table) for c in range(len(head))]
    print(f"libtpc against its peers: median [min–max] of {meta['rounds']} alternating rounds "
          f"after {meta['warmup_rounds']} warm-up; xN = the peer's figure over libtpc's, oriented so that > 1 means "
          f"libtpc wins; — = no equivalent ({mach['nproc']} cpus, {mach['cpu_model']}, "
          f"kernel {mach['kernel']}, {mach['date']})")
    for i, r in enumerate(table):
        print("  ".join(c.ljust(width[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in width))
    notes = []
    for o in rows:
        for impl, variant in o.get("variants", {}).items():
            others = ", ".join(f"{short_variant(impl, k)} {si(m)}"
                               for k, m in o["variant_medians"][impl].items() if k != variant)
            gone = "; ".join(short_variant(impl, k) for k in o.get("variants_left_out", {})
                             .get(impl, []))
            notes.append(f"  {o['id']} {impl}: {short_variant(impl, variant)}"
                         + (f" (others: {others})" if others else "")
                         + (f" (left out, conditions unfit: {gone})" if gone else ""))
    print(legend(rows))
    if notes:
        print("Best variant of a peer that ran in several (its median is the figure above):")
        print("\n".join(notes))
    for w in warnings:
        print(f"WARNING: {w}")

    # The chart: ratios per headline workload and peer, libtpc = 1, log scale.
    with open(os.path.join(outdir, "latest.dat"), "w") as f:
        f.write("# workload " + " ".join(peers_used) + "\n")
        for o in rows:
            if o["ratio"] and o["id"] in CHARTED:
                f.write(o["id"] + " " + " ".join(
                    f"{o['ratio'][p]:.4g}" if p in o["ratio"] else "-" for p in peers_used) + "\n")
    cols = " ".join(peers_used)
    plots = ", ".join(f"'{outdir}/latest.dat' using {i + 2}:xtic(1) title '{p}'"
                      for i, p in enumerate(peers_used))
    with open(os.path.join(outdir, "latest.gp"), "w") as f:
        f.write(f"""# generated by scripts/bench-report.py; peers: {cols}
set terminal pngcairo size 1400,800 noenhanced font ',10'
set output '{outdir}/latest.png'
set title "libtpc vs peers: ratio of medians, > 1 = libtpc better (libtpc = 1), {meta['rounds']} rounds, {mach['date']}"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set datafile missing '-'
set logscale y 2
set yrange [0.125:*]
set ylabel 'peer / libtpc (oriented: > 1 = libtpc wins)'
set xtics rotate by 45 right
set key top left
set grid ytics
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black'
plot {plots if plots else "1 notitle"}
""")
    return 0


def legend(rows):
    """One line on what the rows measure: the shipped defaults, but for those TUNED names."""
    used = [f"{suffix}: {text}" for suffix, text in TUNED.items()
            if any(r["id"].endswith(suffix) for r in rows)]
    line = ("libtpc's figures are its shipped defaults (a release build, no TPC_* environment "
            "variable)")
    if used:
        line += ", but in the rows whose id ends in " + "; ".join(used)
    return line + "."


def num(v):
    """A short figure: 3 significant digits, k/M suffixes."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def markdown(outdir):
    rows = json.load(open(os.path.join(outdir, "latest.json")))
    m = json.load(open(os.path.join(outdir, "latest-machine.json")))
    seen = {p for r in rows for p in r["peers"]}
    # The terminal table's order (PEERS), then any peer it does not know, by name.
    peers = [p for p in PEERS if p in seen] + sorted(seen - set(PEERS))
    print(f"`scripts/bench.sh`, {m.get('date', '?')}, commit {m.get('commit', '?')}: "
          f"{m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), kernel {m.get('kernel', '?')}; "
          f"median of {m.get('rounds', '?')} alternating rounds after "
          f"{m.get('warmup_rounds', '?')} warm-up; ×N = the peer's figure over libtpc's, "
          "oriented so that > 1 means libtpc wins.")
    print()
    print("| workload | unit | libtpc | " + " | ".join(peers) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in peers) + " |")
    for r in rows:
        cells = []
        for p in peers:
            if p in r["ratio"]:
                cells.append(f"{num(r['peers'][p])} ×{r['ratio'][p]:.2f}")
            elif p in r["peers"]:  # no libtpc figure to compare with
                cells.append(num(r["peers"][p]))
            else:
                cells.append("—")
        ours = "—" if r["libtpc"] is None else num(r["libtpc"])
        print(f"| {r['id']} | {r['unit']} | {ours} | " + " | ".join(cells) + " |")
    print()
    print(legend(rows))
    # Which variant gave a peer's figure, workloads grouped by winner.
    won = {}
    for r in rows:
        for impl, variant in r.get("variants", {}).items():
            won.setdefault(impl, {}).setdefault(short_variant(impl, variant), []).append(r["id"])
    gone = {}
    for r in rows:
        for impl, variants in r.get("variants_left_out", {}).items():
            for v in variants:
                gone.setdefault(impl, {}).setdefault(short_variant(impl, v), []).append(r["id"])
    for impl, by_variant in won.items():
        print()
        print(f"{impl}: the best of its variants per workload (each one's median over the "
              "rounds): " + "; ".join(f"{v} for {', '.join(ids)}"
                                      for v, ids in by_variant.items()) + ".", end="")
        if impl in gone:
            print(" Left out, as their conditions did not fit the workload: "
                  + "; ".join(f"{v} for {', '.join(ids)}" for v, ids in gone[impl].items())
                  + ".", end="")
        print()
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "markdown":
        return markdown(sys.argv[2])
    if len(sys.argv) >= 2 and sys.argv[1] == "plan":
        plan(sys.argv[2:])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "report":
        meta = json.loads(os.environ.get("BENCH_META", "{}"))
        meta.setdefault("groups", sorted({w[2] for w in WORKLOADS}))
        meta.setdefault("ids", [])
        meta.setdefault("rounds", 0)
        meta.setdefault("quick", False)
        meta.setdefault("durations", {})
        meta.setdefault("absent", [])
        meta.setdefault("warmup_rounds", 1)
        return report(sys.argv[2], sys.argv[3], meta)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
