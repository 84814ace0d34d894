#!/usr/bin/env python3
"""bench/tcp-share.py (TCP_FLOOR=1's classifier) on perf script text made up here: which samples
count as TCP work, and a clear failure on input with no sample."""
import subprocess
import sys

script = sys.argv[1]


def run(text):
    return subprocess.run([sys.executable, script], input=text, capture_output=True, text=True)


SAMPLES = """\
tpc-kv 100 [000] 1.000001: 4000000 cpu-clock:
\tffffffff81a00001 _raw_spin_unlock_irqrestore+0x11 ([kernel.kallsyms])
\tffffffff81a00002 tcp_sendmsg_locked+0x2c ([kernel.kallsyms])
\tffffffff81a00003 tcp_sendmsg+0x2c ([kernel.kallsyms])
\tffffffff81a00004 io_send+0x60 ([kernel.kallsyms])

tpc-kv 100 [000] 1.000002: 4000000 cpu-clock:
\tffffffff81a00005 io_arm_apoll+0x10 ([kernel.kallsyms])
\tffffffff81a00006 io_submit_sqes+0x99 ([kernel.kallsyms])

tpc-kv 100 [000] 1.000003: 4000000 cpu-clock:
\t55555555 resp_parse+0x20 (/usr/bin/tpc-kv)

tpc-kv 100 [000] 1.000004: 4000000 cpu-clock:
\tffffffff81a00007 skb_release_data+0x5 ([kernel.kallsyms])
\tffffffff81a00008 net_rx_action+0x100 ([kernel.kallsyms])
\tffffffff81a00009 do_softirq+0x10 ([kernel.kallsyms])
"""

r = run(SAMPLES)
assert r.returncode == 0, r
share, n = r.stdout.split()
assert n == "4" and share == "0.5000", r.stdout  # the send and the receive softirq

# The last sample without a blank line after it still counts.
r = run(SAMPLES.rstrip("\n") + "\n")
assert r.stdout.split() == ["0.5000", "4"], r.stdout

# A frame named like a TCP entry point only as a suffix does not count.
r = run("x 1 [000] 1.0: 1 cpu-clock:\n\tffff my_tcp_sendmsg_wrapper+0x1 (x)\n")
assert r.stdout.split() == ["0.0000", "1"], r.stdout

r = run("")
assert r.returncode == 1 and "no samples" in r.stderr, r
print("tcp-share: 4 cases passed")
