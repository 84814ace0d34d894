#!/usr/bin/env python3
"""Checks that HTTP servers answer byte for byte as examples/http.c (tpc-http) does, on the
parser's edge cases: pipelining, keep-alive, HTTP/1.0, Connection: close, bodies, malformed
requests, requests split across packets. bench/net.sh runs it on tpc-http, epoll-server and
tokio-server before it measures them.
    http-check.py ADDR [ADDR...]      ADDR: 127.0.0.1:8080
Each case sends its chunks (50 ms apart), half-closes, and reads until the server closes; the
answer must be the expected run of 200s and a final 400. Exit status 1 if any answer differs."""
import socket
import sys
import time

OK = (b"HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
      b"Content-Length: 13\r\n\r\nHello, World!")
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

# (name, chunks sent 50 ms apart, number of 200s expected, 400 expected at the end)
CASES = [
    ("one GET", [GET], 1, False),
    ("3 pipelined", [GET * 3], 3, False),
    ("64 pipelined", [GET * 64], 64, False),
    ("200 pipelined (answers split at 16 KiB)", [GET * 200], 200, False),
    ("split in two packets", [GET[:7], GET[7:]], 1, False),
    ("split at the blank line", [GET[:-2], GET[-2:] + GET], 2, False),
    ("HTTP/1.0 closes", [b"GET / HTTP/1.0\r\n\r\n" + GET], 1, False),
    ("HTTP/1.0 keep-alive", [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET], 2, False),
    ("Connection: close", [b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET], 1, False),
    ("connection: CLOSE", [b"GET / HTTP/1.1\r\nconnection:\tCLOSE\r\n\r\n" + GET], 1, False),
    ("Connection: close then more in next read",
     [b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", GET], 1, False),
    ("body", [b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + GET], 2, False),
    ("body in a later packet", [b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhe", b"llo" + GET],
     2, False),
    ("Content-Length empty", [b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n" + GET], 0, True),
    ("Content-Length +2", [b"POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\nab" + GET], 0, True),
    ("Content-Length abc", [b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"], 0, True),
    ("Content-Length -1", [b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"], 0, True),
    ("Content-Length 5 trailing space", [b"POST / HTTP/1.1\r\nContent-Length: 5 \r\n\r\nhello"],
     0, True),
    ("Content-Length too big", [b"POST / HTTP/1.1\r\nContent-Length: 16385\r\n\r\n"], 0, True),
    ("Transfer-Encoding", [b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"], 0, True),
    ("lower-case method", [b"get / HTTP/1.1\r\n\r\n"], 0, True),
    ("HTTP/2.0", [b"GET / HTTP/2.0\r\n\r\n"], 0, True),
    ("HTTP/1.2", [b"GET / HTTP/1.2\r\n\r\n"], 0, True),
    ("no target", [b"GET  HTTP/1.1\r\n\r\n"], 0, True),
    ("no method", [b" / HTTP/1.1\r\n\r\n"], 0, True),
    ("header without colon", [b"GET / HTTP/1.1\r\nHost x\r\n\r\n"], 0, True),
    ("header without name", [b"GET / HTTP/1.1\r\n: x\r\n\r\n"], 0, True),
    ("GET then malformed", [GET + GET + b"BAD\r\n\r\n"], 2, True),
    ("empty request line", [b"\r\n\r\n"], 0, True),
    ("head of 16 KiB without end", [b"GET / HTTP/1.1\r\nX: " + b"a" * (16384 - 19)], 0, True),
    ("incomplete then EOF", [b"GET / HTTP/1.1\r\nHost: x\r\n"], 0, False),
    ("HTTP/1.0 with body not yet in", [b"POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhe"], 0,
     False),
]


def run(addr, chunks):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=3)
    got = b""
    try:
        for i, c in enumerate(chunks):
            if i:
                time.sleep(0.05)
            s.sendall(c)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server has closed already: read what it sent before
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except socket.timeout:
        got += b"<timeout>"
    except OSError:
        pass  # reset: the server closed with our bytes unread; what it sent still counts
    finally:
        s.close()
    return got


def describe(b):
    n = 0
    while b.startswith(OK):
        n, b = n + 1, b[len(OK):]
    rest = "" if not b else (" + 400" if b == BAD else " + %r" % b[:80])
    return "%d x 200%s" % (n, rest)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: http-check.py ADDR [ADDR...]")
    failed = 0
    for addr in sys.argv[1:]:
        bad = 0
        for name, chunks, n_ok, bad_end in CASES:
            want = OK * n_ok + (BAD if bad_end else b"")
            got = run(addr, chunks)
            if got != want:
                bad += 1
                print("http-check: %s: %s: got %s, want %s" % (addr, name, describe(got),
                                                              describe(want)))
        print("http-check: %s: %d of %d cases as tpc-http answers them" %
              (addr, len(CASES) - bad, len(CASES)))
        failed += bad
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
