#!/usr/bin/env python3
"""Checks that HTTP servers answer byte for byte as examples/http.c (tpc-http) does, on the
parser's edge cases (examples/http-parse.h has the rules): pipelining, keep-alive, HEAD,
HTTP/1.0, Connection: close, bodies with Content-Length and chunked, Expect: 100-continue,
malformed or refused requests, requests split across packets. bench/net.sh runs it on tpc-http
and the peers that answer as it does before it measures them.
    http-check.py [--gets] ADDR [ADDR...]      ADDR: 127.0.0.1:8080
--gets: only the cases of keep-alive GETs, whole, pipelined and split (what the benchmark sends),
for a peer that does not implement the rest (bench/peers/tokio-net).
Each case sends its chunks (50 ms apart), half-closes, and reads until the server closes; the
answer must be the expected bytes. Exit status 1 if any answer differs."""
import socket
import sys
import time

HEAD = (b"HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 13\r\n")
OK = HEAD + b"\r\nHello, World!"                               # HTTP/1.1, kept open
OK_KA = HEAD + b"Connection: keep-alive\r\n\r\nHello, World!"  # HTTP/1.0, kept open
OK_CLOSE = HEAD + b"Connection: close\r\n\r\nHello, World!"    # closed after it
HEAD_OK = HEAD + b"\r\n"                                        # the answer to HEAD
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PHRASES = {400: "Bad Request", 413: "Content Too Large", 417: "Expectation Failed",
           431: "Request Header Fields Too Large", 501: "Not Implemented",
           505: "HTTP Version Not Supported"}


def err(status, why):
    """An error answer: the last on its connection."""
    body = why.encode() + b"\n"
    return (b"HTTP/1.1 %d %s\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, PHRASES[status].encode(),
                                                                  len(body))) + body


BAD_LINE = err(400, "malformed request line")
BAD_CL = err(400, "invalid character in content-length header")
NO_HOST = err(400, "an HTTP/1.1 request needs exactly one Host header")
CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

# (name, chunks sent 50 ms apart, the answer expected); the first GETS of them: keep-alive GETs
GETS = 6
CASES = [
    ("one GET", [GET], OK),
    ("3 pipelined", [GET * 3], OK * 3),
    ("64 pipelined", [GET * 64], OK * 64),
    ("200 pipelined (answers split at 16 KiB)", [GET * 200], OK * 200),
    ("split in two packets", [GET[:7], GET[7:]], OK),
    ("split at the blank line", [GET[:-2], GET[-2:] + GET], OK * 2),
    ("HEAD then GET", [b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET], HEAD_OK + OK),
    ("HTTP/1.0 closes", [b"GET / HTTP/1.0\r\n\r\n" + GET], OK_CLOSE),
    ("HTTP/1.0 keep-alive", [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET],
     OK_KA + OK),
    ("Connection: close", [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET],
     OK_CLOSE),
    ("connection: CLOSE", [b"GET / HTTP/1.1\r\nHost: x\r\nconnection:\tCLOSE\r\n\r\n" + GET],
     OK_CLOSE),
    ("Connection: close then more in next read",
     [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GET], OK_CLOSE),
    ("body", [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + GET], OK * 2),
    ("body in a later packet",
     [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe", b"llo" + GET], OK * 2),
    ("chunked body", [CHUNKED + b"5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n" + GET], OK * 2),
    ("chunked body in pieces", [CHUNKED + b"5\r\nhe", b"llo\r\n0\r", b"\n\r\n" + GET], OK * 2),
    ("Expect: 100-continue",
     [b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
      b"ok" + GET], CONTINUE + OK * 2),
    ("Content-Length empty", [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n" + GET],
     BAD_CL),
    ("Content-Length +2", [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab" + GET],
     BAD_CL),
    ("Content-Length -1", [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"], BAD_CL),
    ("Content-Length too big",
     [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"],
     err(413, "request body over 1048576 bytes")),
    ("Transfer-Encoding gzip", [b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"],
     err(501, "transfer coding not implemented (only chunked is)")),
    ("lower-case method", [b"get / HTTP/1.1\r\nHost: x\r\n\r\n"],
     err(501, "method not implemented")),
    ("HTTP/2.0", [b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"],
     err(505, "only HTTP/1.0 and HTTP/1.1 are served here")),
    ("HTTP/1.2 (as 1.1)", [b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"], OK),
    ("no Host", [b"GET / HTTP/1.1\r\n\r\n"], NO_HOST),
    ("no target", [b"GET  HTTP/1.1\r\nHost: x\r\n\r\n"], BAD_LINE),
    ("no method", [b" / HTTP/1.1\r\nHost: x\r\n\r\n"], BAD_LINE),
    ("header without colon", [b"GET / HTTP/1.1\r\nHost x\r\n\r\n"],
     err(400, "invalid character in header")),
    ("GET then malformed", [GET + GET + b"BAD\r\n\r\n"], OK * 2 + BAD_LINE),
    ("empty lines before a request", [b"\r\n\r\n" + GET], OK),
    ("head over 16 KiB", [b"GET / HTTP/1.1\r\nX: " + b"a" * 16384],
     err(431, "request line and headers over 16384 bytes")),
    ("incomplete then EOF", [b"GET / HTTP/1.1\r\nHost: x\r\n"], b""),
    ("HTTP/1.0 with body not yet in", [b"POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhe"], b""),
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
    return "%d x 200%s" % (n, " + %r" % b[:160] if b else "")


def main():
    args = sys.argv[1:]
    cases = CASES
    if args[:1] == ["--gets"]:
        args, cases = args[1:], CASES[:GETS]
    if not args:
        sys.exit("usage: http-check.py [--gets] ADDR [ADDR...]")
    failed = 0
    for addr in args:
        bad = 0
        for name, chunks, want in cases:
            got = run(addr, chunks)
            if got != want:
                bad += 1
                print("http-check: %s: %s: got %s, want %s" % (addr, name, describe(got),
                                                              describe(want)))
        print("http-check: %s: %d of %d cases as tpc-http answers them" %
              (addr, len(cases) - bad, len(cases)))
        failed += bad
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
