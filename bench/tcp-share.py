#!/usr/bin/env python3
"""The share of a server's CPU spent in the kernel's TCP stack (TCP_FLOOR=1 in bench/lib.sh).

Reads `perf script` output of `perf record -g` (call chains, kernel frames included), filtered
to the server's processes (bench/lib.sh: floor_start, floor_stop), on stdin and prints "SHARE SAMPLES": the fraction of the samples whose call chain passes through
the TCP stack (sending, receiving, the loopback's receive softirq that runs in the sender's
context, ACKs, accept, connect and close), and the number of samples.

That part is the floor no user-space design removes while it moves the same bytes over the same
loopback TCP connections with the same system calls doing the work: a server's CPU per request
times its share is that floor for it, and the lowest floor among the servers measured bounds the
best ratio any of them could reach against a peer (the peer's CPU per request over that floor).
"""
import sys

# Entry points of the TCP stack; a sample is TCP work when any frame of its chain starts with one.
TCP = (
    "tcp_sendmsg", "tcp_recvmsg", "tcp_splice_read", "tcp_read_sock", "tcp_v4_rcv",
    "tcp_v4_do_rcv", "tcp_rcv_established", "tcp_write_xmit", "__tcp_push_pending_frames",
    "tcp_cleanup_rbuf", "__tcp_send_ack", "tcp_send_ack", "tcp_close", "__tcp_close",
    "tcp_shutdown", "tcp_v4_connect", "inet_csk_accept", "inet_accept", "net_rx_action",
    "tcp_delack_timer", "tcp_write_timer",
)


def main():
    samples = tcp = 0
    in_tcp = False
    started = False
    for line in sys.stdin:
        if not line.strip():  # a blank line ends a sample
            if started:
                samples += 1
                tcp += in_tcp
            started = in_tcp = False
            continue
        if not line[0].isspace():  # the sample's header: comm pid time event
            started, in_tcp = True, False
            continue
        parts = line.split()
        if started and len(parts) >= 2 and parts[1].split("+")[0].startswith(TCP):
            in_tcp = True
    if started:
        samples += 1
        tcp += in_tcp
    if samples == 0:
        print("tcp-share.py: no samples in the input", file=sys.stderr)
        sys.exit(1)
    print(f"{tcp / samples:.4f} {samples}")


if __name__ == "__main__":
    main()
