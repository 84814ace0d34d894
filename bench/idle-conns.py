#!/usr/bin/env python3
"""Holds N idle connections open through a proxy, for bench/proxy.sh's memory per idle
connection: python3 bench/idle-conns.py PORT N

Each connection sends one HTTP/1.1 GET and reads its whole answer (so that both the client's and
the backend's side of the proxy are established and have carried bytes once), then stays open
and silent. Prints "ready N" once all are idle, then waits for a line on stdin (or its end) and
closes them. Exits 1 with a message if any connection fails."""
import resource
import selectors
import socket
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def answer_done(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    sel = selectors.DefaultSelector()
    socks, pending = [], {}
    batch = 256  # connections in flight at once: a bounded burst for the listeners' backlogs
    started = 0
    while started < n or pending:
        while started < n and len(pending) < batch:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(REQUEST)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            pending[s] = b""
            socks.append(s)
            started += 1
        events = sel.select(timeout=10)
        if not events:
            sys.exit(f"idle-conns: {len(pending)} answers missing after 10 s")
        for key, _ in events:
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                sys.exit("idle-conns: a connection closed before its answer")
            pending[s] += data
            if answer_done(pending[s]):
                sel.unregister(s)
                del pending[s]
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
