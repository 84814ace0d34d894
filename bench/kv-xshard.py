#!/usr/bin/env python3
"""The cost of a cross-shard command in tpc-kv against a local one.

  python3 bench/kv-xshard.py PORT PID [SECONDS] [ROUNDS]

PORT/PID: a tpc-kv with two shards (bench/kv.sh's conditions: TPC_CPUS=0,1 taskset -c 0,1).
Opens connections until CONNS of them sit on shard 0 (INFO says which shard a connection is
on), then sends SET {tag}:N v from them with a hashtag that shard 0 owns ("local") or that
shard 1 owns ("remote": the command goes to shard 1 over the rings and its reply comes back),
-P 1 (each connection one command at a time) and -P 16 (pipelines of 16), rounds alternating
local and remote. Per round: the server's CPU (all its threads, /proc/PID/task/*/schedstat) per
command, and at -P 1 the median round trip seen by the client. Prints "bench kv_xshard_..."
lines and a summary: remote over local."""
import ctypes
import os
import socket
import statistics
import sys
import threading
import time

CONNS = 8
xxh = ctypes.CDLL("libxxhash.so.0")
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def owner(tag, shards=2):
    b = tag.encode()
    return (xxh.XXH3_64bits(b, len(b)) >> 32) % shards


def cpu_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def read_reply(s, buf):
    while b"\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    i = buf.index(b"\r\n")
    head = bytes(buf[:i])
    del buf[:i + 2]
    if head[:1] == b"$":
        n = int(head[1:])
        if n >= 0:
            while len(buf) < n + 2:
                buf += s.recv(65536)
            body = bytes(buf[:n])
            del buf[:n + 2]
            return body
    return head


def conns_on_shard0(port):
    keep, drop = [], []
    while len(keep) < CONNS and len(drop) < 200:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"*1\r\n$4\r\nINFO\r\n")
        info = read_reply(s, bytearray())
        (keep if b"tpc_kv_connection_shard:0\r" in info else drop).append(s)
    for s in drop:
        s.close()
    if len(keep) < CONNS:
        sys.exit("kv-xshard.py: too few connections landed on shard 0")
    return keep


def worker(s, tag, depth, stop, counts, rtts, idx):
    buf = bytearray()
    n = 0
    key = ("{%s}:%d" % (tag, idx)).encode()
    cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key)
    batch = cmd * depth
    while not stop.is_set():
        t0 = time.perf_counter_ns()
        s.sendall(batch)
        for _ in range(depth):
            read_reply(s, buf)
        if depth == 1:
            rtts.append(time.perf_counter_ns() - t0)
        n += depth
    counts[idx] = n


def run(conns, pid, tag, depth, seconds):
    stop = threading.Event()
    counts = [0] * len(conns)
    rtts = []
    ts = [threading.Thread(target=worker, args=(s, tag, depth, stop, counts, rtts, i))
          for i, s in enumerate(conns)]
    c0 = cpu_ns(pid)
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    c1 = cpu_ns(pid)
    n = sum(counts)
    return (c1 - c0) / n, n / seconds, (statistics.median(rtts) if rtts else 0)


def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    tags = {}
    i = 0
    while len(tags) < 2:
        tags.setdefault(owner("t%d" % i), "t%d" % i)
        i += 1
    conns = conns_on_shard0(port)
    cond = (f"{CONNS} connections on shard 0 of 2 (CPUs 0-1), client on CPU 1, SET with a "
            f"hashtag of shard 0 (local) or shard 1 (remote), {seconds:g} s per round")
    res = {}
    for depth in (1, 16):
        for r in range(rounds):
            for mode, tag in (("local", tags[0]), ("remote", tags[1])):
                ns, rate, rtt = run(conns, pid, tag, depth, seconds)
                res.setdefault((depth, mode), []).append((ns, rate, rtt))
                print(f"bench kv_xshard_p{depth}_{mode}_cpu {ns / 1000:.2f} us/req | {cond}, "
                      f"-P {depth}, round {r + 1}, {rate:.0f} req/s"
                      + (f", median round trip {rtt / 1000:.1f} us" if depth == 1 else ""),
                      flush=True)
    print()
    for depth in (1, 16):
        loc = [x[0] for x in res[(depth, "local")]]
        rem = [x[0] for x in res[(depth, "remote")]]
        ratios = [b / a for a, b in zip(loc, rem)]
        line = (f"-P {depth}: server CPU per command local {min(loc) / 1000:.2f}-"
                f"{max(loc) / 1000:.2f} us, remote {min(rem) / 1000:.2f}-{max(rem) / 1000:.2f} us"
                f" (remote/local per round {min(ratios):.2f}-{max(ratios):.2f}, extra "
                f"{(statistics.median(rem) - statistics.median(loc)) / 1000:.2f} us)")
        if depth == 1:
            lr = [x[2] for x in res[(1, "local")]]
            rr = [x[2] for x in res[(1, "remote")]]
            line += (f"; median round trip local {statistics.median(lr) / 1000:.1f} us, remote "
                     f"{statistics.median(rr) / 1000:.1f} us")
        print(line)
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
