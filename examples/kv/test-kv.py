#!/usr/bin/env python3
"""tpc-kv end to end: the server (argv[1]) on loopback, port 0, driven by raw sockets and by
redis-cli, and compared with redis-server where both should answer the same (those cases are
skipped when redis-server or redis-cli is missing). Every wait polls for its condition up to a
deadline; TPC_TEST_SLOW stretches the deadlines."""
import os
import random
import resource
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

KV = None
SLOW = 4 if os.environ.get("TPC_TEST_SLOW") else 1
DEADLINE = 20 * SLOW


def until(cond, what, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


class Server:
    """tpc-kv with `shards` shards on 127.0.0.1:0."""

    def __init__(self, shards=3, args=(), preexec_fn=None):
        self.p = subprocess.Popen([KV, "--port", "0", "--shards", str(shards), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
        self.out = []
        while True:
            line = self.p.stdout.readline().decode()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m or not line:
                break
            self.out.append(line)
        if not m:
            self.p.kill()
            raise AssertionError("tpc-kv did not start: " + "".join(self.out))
        self.port = int(m.group(1))
        self.reader = threading.Thread(target=self.drain, daemon=True)
        self.reader.start()

    def drain(self):
        for line in self.p.stdout:
            self.out.append(line.decode(errors="replace"))

    def kill_if_running(self):
        """A case that failed before it stopped its server leaves no process behind."""
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def stop(self):
        """Stops the server (SIGTERM) and returns its exit status; fails on a sanitizer's
        report in its output."""
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=DEADLINE)
        self.reader.join(timeout=DEADLINE)
        self.p.stdout.close()
        text = "".join(self.out)
        for bad in ("Sanitizer", "runtime error", "LeakSanitizer", "libtpc: shard"):
            if bad in text and not (bad == "libtpc: shard" and "stalled" in text):
                raise AssertionError("tpc-kv reported a problem:\n" + text)
        return rc


class RedisServer:
    """redis-server on a free port, without persistence, or None when it is missing."""

    @staticmethod
    def start():
        exe = shutil.which("redis-server")
        if not exe:
            return None
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        d = tempfile.mkdtemp()
        p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", d],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = RedisServer()
        r.p, r.port = p, port

        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        until(up, "redis-server to listen")
        return r

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=DEADLINE)


def encode(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def info(c):
    """INFO's fields as a dict of strings."""
    return dict(l.split(":", 1) for l in c.cmd("INFO").decode().split("\r\n") if ":" in l)


class Conn:
    """A raw RESP client: send bytes, read replies parsed (errors as RespError objects)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise AssertionError("bad reply line %r" % line)

    def cmd(self, *args):
        self.send(encode(*args))
        return self.reply()

    def raw_reply_bytes(self, count):
        """The raw bytes of `count` replies (for byte-exact comparison)."""
        start = len(self.buf)
        out = b""
        for _ in range(count):
            before = self.buf
            self.reply()
        return out


def log_records(path):
    """The records of a tpc-kv log as (offset, size) pairs: after the 16-byte header, each
    record is a 4-byte length, a 4-byte checksum and the payload. A log written with
    appendfsync always has pad records too (length 0xffffffff: the records go on at the next
    4 KiB boundary) and ends with zeros (a record of length 0)."""
    with open(path, "rb") as f:
        data = f.read()
    off, out = 16, []
    while off + 8 <= len(data):
        n = int.from_bytes(data[off : off + 4], "little")
        if n == 0:
            break
        if n == 0xFFFFFFFF:
            off = (off + 8 + 4095) // 4096 * 4096
            continue
        out.append((off, 8 + n))
        off += 8 + n
    return out


def records_end(path):
    """Where the last record of a tpc-kv log ends."""
    off, size = log_records(path)[-1]
    return off + size


def record_bytes(path):
    return sum(size for _, size in log_records(path))


def info_direct(test):
    """Whether the test's directory takes O_DIRECT (then tpc-kv's always logs are direct)."""
    try:
        os.close(os.open(os.path.join(test.dir.name, "probe"), os.O_RDWR | os.O_CREAT | os.O_DIRECT))
        return True
    except OSError:
        return False


class RespError(str):
    pass


# Commands whose replies are deterministic: tpc-kv and redis-server must answer each byte for
# byte the same (SMEMBERS, KEYS and HGETALL compared in any order; SPOP left out).
SAME = [
    ["PING"], ["PING", "hi"], ["ECHO", "x y"], ["SELECT", "0"],
    ["SET", "k", "v"], ["GET", "k"], ["GET", "nokey"], ["SET", "k", "w", "NX"], ["SET", "k", "w", "XX"],
    ["SET", "k2", "w", "XX"], ["SET", "k", "v2", "GET"], ["SET", "n", "10"], ["INCR", "n"],
    ["INCRBY", "n", "-30"], ["DECR", "n"], ["DECRBY", "n", "5"], ["INCR", "k"], ["INCRBY", "n", "x"],
    ["GET", "n"], ["INCRBY", "n", "1026"], ["GET", "n"], ["STRLEN", "n"], ["DECRBY", "n", "1000"],
    ["GET", "n"], ["STRLEN", "n"], ["APPEND", "n", "7"], ["GET", "n"],
    # overwrites of a string by one of about its size (in place), shorter, longer, other types
    ["SET", "o", "12345678"], ["SET", "o", "1234"], ["GET", "o"], ["STRLEN", "o"],
    ["SET", "o", "x" * 40], ["GET", "o"], ["SET", "o", "y"], ["GET", "o"], ["APPEND", "o", "zz"],
    ["GET", "o"], ["SET", "o", "abc", "EX", "100"], ["SET", "o", "abd"], ["TTL", "o"],
    ["SET", "o", "abe", "EX", "100"], ["SET", "o", "abf", "KEEPTTL"], ["TTL", "o"],
    ["SET", "o", "abg", "GET"], ["GET", "o"], ["SET", "o", ""], ["GET", "o"], ["STRLEN", "o"],
    ["SET", "o", "99"], ["INCR", "o"], ["GET", "o"], ["SET", "o", "7"], ["INCR", "o"],
    ["RPUSH", "ol", "abc"], ["SET", "ol", "abc"], ["TYPE", "ol"], ["GET", "ol"],
    ["SET", "o", "q", "NX"], ["GET", "o"],
    ["SET", "big", "9223372036854775807"], ["INCR", "big"], ["APPEND", "k", "++"], ["STRLEN", "k"],
    ["STRLEN", "nokey"], ["APPEND", "newk", "abc"], ["MSET", "a", "1", "b", "2"], ["MSET", "a"],
    ["MGET", "a", "b", "nokey", "k"], ["EXISTS", "a", "b", "nokey", "a"], ["DEL", "a", "nokey"],
    ["TYPE", "b"], ["TYPE", "nokey"], ["EXPIRE", "b", "100"], ["TTL", "b"], ["PERSIST", "b"],
    ["TTL", "b"], ["TTL", "nokey"], ["PTTL", "nokey"], ["EXPIRE", "nokey", "10"], ["EXPIRE", "b", "x"],
    ["LPUSH", "l", "a", "b", "c"], ["RPUSH", "l", "d"], ["LRANGE", "l", "0", "-1"],
    ["LRANGE", "l", "1", "2"], ["LRANGE", "l", "-2", "100"], ["LRANGE", "l", "5", "1"], ["LLEN", "l"],
    ["LPOP", "l"], ["RPOP", "l"], ["LPOP", "l", "5"], ["LPOP", "l"], ["LPOP", "l", "2"], ["TYPE", "l"],
    ["LPUSH", "k", "x"], ["GET", "l"], ["HSET", "h", "f", "1", "g", "2"], ["HSET", "h", "f", "3"],
    ["HGET", "h", "f"], ["HGET", "h", "nof"], ["HDEL", "h", "f", "nof"], ["HLEN", "h"],
    ["HEXISTS", "h", "g"], ["HSET", "h", "f"], ["GET", "h"], ["SADD", "s", "a", "b", "a"],
    ["SISMEMBER", "s", "a"], ["SISMEMBER", "s", "z"], ["SCARD", "s"], ["SREM", "s", "a", "z"],
    ["SMEMBERS", "s"], ["ZADD", "z", "1", "a", "2", "b", "1.5", "c"], ["ZADD", "z", "3", "a"],
    ["ZADD", "z", "NX", "9", "a", "4", "d"], ["ZADD", "z", "x", "a"], ["ZRANGE", "z", "0", "-1"],
    ["ZRANGE", "z", "0", "1", "WITHSCORES"], ["ZSCORE", "z", "c"], ["ZCARD", "z"],
    ["ZPOPMIN", "z"], ["ZPOPMIN", "z", "2"], ["ZPOPMIN", "nokey"], ["ZADD", "z", "0.1", "t"],
    ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["GET"], ["NOSUCH", "a", "b"], ["SET", "k", "v", "EX", "0"],
    ["SET", "k", "v", "EX", "x"], ["SET", "k", "v", "NX", "XX"], ["SETNX", "k", "z"], ["DBSIZE"],
    ["SET", "k", "v", "PX", "9223372036854775807"], ["GET", "k"], ["SET", "e", "v"],
    ["EXPIREAT", "e", "-1"], ["EXISTS", "e"], ["SET", "e", "v"], ["PEXPIREAT", "e", "-5"],
    ["EXISTS", "e"], ["SET", "e", "v"], ["EXPIREAT", "e", "9223372036854775807"], ["EXPIRE", "e", "-5"],
    ["EXISTS", "e"], ["DECRBY", "n", "-9223372036854775808"], ["LPOP", "l", "1", "2"],
    ["RPOP", "l", "1", "2"], ["SPOP", "s", "1", "2"], ["ZPOPMIN", "z", "1", "2"], ["HMSET", "h", "f"],
    ["HMSET", "hm", "f", "1", "g", "2"], ["HGET", "hm", "g"], ["SET", "a" * 60, "1"],
    ["KEYS", "a*a*a*a*a*a*a*a*a*a*a*a*b"], ["KEYS", "a*a*a*a*a*a*a*a*a*a*a*a"],
    ["HSET", "hg", "f1", "1", "f2", "2", "f3", "3"], ["HGETALL", "hg"], ["HGETALL", "nokey"],
    ["HGETALL", "k"], ["KEYS", "hg"], ["KEYS", "h?"], ["KEYS", "nomatch*"],
    ["ZADD", "zz", "1", "a", "2", "b", "3", "c", "4", "d"], ["ZADD", "zz", "GT", "CH", "0", "a", "5", "b"],
    ["ZADD", "zz", "LT", "CH", "0", "a", "9", "c"], ["ZADD", "zz", "GT", "LT", "1", "a"],
    ["ZADD", "zz", "NX", "GT", "1", "a"], ["ZADD", "zz", "INCR", "2", "a"],
    ["ZADD", "zz", "INCR", "1", "a", "2", "b"], ["ZADD", "zz", "XX", "INCR", "1", "nope"],
    ["ZADD", "zz", "NX", "INCR", "1", "a"], ["ZADD", "zz", "GT", "INCR", "-1", "a"],
    ["ZADD", "zz", "LT", "INCR", "-1", "a"], ["ZADD", "zz", "INCR", "1.5", "new"],
    ["ZADD", "zz", "GT", "7", "fresh"], ["ZADD", "zz2", "XX", "INCR", "1", "m"], ["EXISTS", "zz2"],
    ["ZRANGE", "zz", "0", "-1", "WITHSCORES"], ["ZRANGE", "zz", "0", "1", "REV"],
    ["ZRANGE", "zz", "-2", "-1", "REV", "WITHSCORES"], ["ZRANGE", "zz", "1", "4", "BYSCORE"],
    ["ZRANGE", "zz", "(1", "4", "BYSCORE", "WITHSCORES"],
    ["ZRANGE", "zz", "-inf", "+inf", "BYSCORE", "LIMIT", "1", "2"],
    ["ZRANGE", "zz", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "0", "3", "WITHSCORES"],
    ["ZRANGE", "zz", "5", "(1", "BYSCORE", "REV"], ["ZRANGE", "zz", "0", "-1", "LIMIT", "0", "1"],
    ["ZRANGE", "zz", "x", "1", "BYSCORE"], ["ZRANGE", "zz", "0", "1", "BOGUS"],
    ["ZRANGE", "zz", "1", "4", "BYSCORE", "LIMIT", "-1", "2"],
    ["ZRANGE", "zz", "1", "9", "BYSCORE", "LIMIT", "1", "-1"], ["ZRANGE", "zz", "(5", "(5", "BYSCORE"],
    ["ZRANGE", "zz3", "0", "-1", "BYSCORE"], ["ZRANGE", "zz", "0", "x"],
    ["ZADD", "lx", "0", "b", "0", "a", "0", "ab", "0", "c", "0", "d", "0", "e", "0", ""],
    ["ZRANGE", "lx", "-", "+", "BYLEX"], ["ZRANGE", "lx", "[b", "(d", "BYLEX"],
    ["ZRANGE", "lx", "(a", "[c", "BYLEX"], ["ZRANGE", "lx", "[a", "[a", "BYLEX"],
    ["ZRANGE", "lx", "(a", "(ab", "BYLEX"], ["ZRANGE", "lx", "[", "(b", "BYLEX"],
    ["ZRANGE", "lx", "+", "-", "BYLEX", "REV"], ["ZRANGE", "lx", "[d", "[b", "BYLEX", "REV"],
    ["ZRANGE", "lx", "-", "+", "BYLEX", "LIMIT", "1", "3"],
    ["ZRANGE", "lx", "+", "-", "BYLEX", "REV", "LIMIT", "2", "2"],
    ["ZRANGE", "lx", "+", "-", "BYLEX"], ["ZRANGE", "lx", "-", "-", "BYLEX"],
    ["ZRANGE", "lx", "[z", "+", "BYLEX"], ["ZRANGE", "lx", "b", "+", "BYLEX"],
    ["ZRANGE", "lx", "-", "c", "BYLEX"], ["ZRANGE", "lx", "-", "+", "BYLEX", "WITHSCORES"],
    ["ZRANGE", "lx", "-", "+", "BYLEX", "BYSCORE"], ["ZRANGE", "nolx", "-", "+", "BYLEX"],
    ["ZRANGE", "lx", "-", "+", "BYLEX", "LIMIT", "-1", "2"],
    ["FLUSHALL"], ["DBSIZE"], ["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "appendfsync"],
    # what a first comparison with redis-server 7.0 found to differ
    ["MSET", "ka", "1", "kb", "2"], ["KEYS", ""], ["SET", "", "x"], ["KEYS", ""], ["KEYS", "*"],
    ["CONFIG", "GET", "SAVE"], ["CONFIG", "get", "AppendOnly"], ["CONFIG", "GET", "APPENDONL?"],
    ["CONFIG", "RESETSTAT"], ["CONFIG", "FOO"], ["CONFIG"], ["COMMAND", "count", "x"],
    ["COMMAND", "FOO"], ["FLUSHALL", "FOO"], ["FLUSHDB", "x", "y"], ["DBSIZE"],
    ["SET", "ea", "v"], ["EXPIREAT", "ea", "99999999999", "NX"], ["EXPIREAT", "ea", "99999999998", "NX"],
    ["PEXPIREAT", "ea", "99999999999500", "GT"], ["PEXPIREAT", "ea", "99999999999000", "LT", "XX"],
    ["EXPIREAT", "ea", "1", "LT", "GT"], ["EXPIRE", "ea", "5", "GT", "LT"], ["EXPIRE", "ea", "x", "FOO"],
    ["EXPIRE", "ea", "x", "NX", "XX"], ["EXPIRE", "ea", "4611686018427388"],
    ["PEXPIRE", "ea", "4611686018427387904"], ["PEXPIREAT", "ea", "9223372036854775807"],
    ["EXPIRE", "ea", "9223372036854775"], ["EXPIREAT", "ea", "9223372036854776"],
    ["PEXPIREAT", "ea", "-9223372036854775808", "XX"], ["EXISTS", "ea"], ["EXPIREAT", "nokey", "1", "NX"],
    ["ZADD", "zf", "0." + "0" * 66 + "1", "a"], ["ZADD", "zf", "1e-310", "d"], ["ZADD", "zf", "-0", "j"],
    ["ZADD", "zf", "1e-400", "u"], ["ZADD", "zf", "-1e400", "o"], ["ZADD", "zf", " 1", "s"],
    ["ZSCORE", "zf", "j"], ["ZSCORE", "zf", "d"], ["ZSCORE", "zf", "a"], ["ZADD", "zf", "5", "b"],
    ["ZRANGE", "zf", "(", "2", "BYSCORE"], ["ZRANGE", "zf", "1e400", "2", "BYSCORE", "REV"],
    ["ZRANGE", "zf", "", "5", "BYSCORE"], ["ZRANGE", "zf", "-1e400", "1e400", "BYSCORE"],
    ["SET", "sr", "v", "EX", "10", "EX", "100"], ["TTL", "sr"], ["SET", "sr", "v", "KEEPTTL", "KEEPTTL"],
    ["TTL", "sr"], ["SET", "sr", "w", "EX", "0", "PX", "5000000"], ["SET", "sr", "w", "EX", "0", "EX", "10"],
    ["TTL", "sr"], ["SET", "sr", "v", "EX", "10", "KEEPTTL"], ["SET", "sr", "v", "PXAT", "1", "PXAT", "x"],
    ["FLUSHALL", "ASYNC"], ["DBSIZE"],
]


class Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kv = Server(shards=3)

    @classmethod
    def tearDownClass(cls):
        rc = cls.kv.stop()
        assert rc == 0, rc  # a clean stop by SIGTERM exits 0

    def conn(self):
        c = Conn(self.kv.port)
        self.addCleanup(c.close)
        return c

    def with_redis(self):
        """A connection to tpc-kv and one to a fresh redis-server (the test skipped without)."""
        r = RedisServer.start()
        if not r:
            self.skipTest("redis-server is not installed")
        self.addCleanup(r.stop)
        theirs = Conn(r.port)
        self.addCleanup(theirs.close)
        return self.conn(), theirs

    def test_same_answers_as_redis(self):
        ours, theirs = self.with_redis()
        ours.cmd("FLUSHALL")
        theirs.cmd("FLUSHALL")
        for args in SAME:
            a, b = ours.cmd(*args), theirs.cmd(*args)
            if args[0] in ("SMEMBERS", "KEYS"):
                a, b = sorted(a), sorted(b)
            if args[0] == "HGETALL" and isinstance(a, list) and isinstance(b, list):
                a, b = sorted(zip(a[::2], a[1::2])), sorted(zip(b[::2], b[1::2]))
            if isinstance(b, RespError) and args[0] in ("NOSUCH", "SET") and isinstance(a, RespError):
                # unknown command and option errors: the same first word is enough
                self.assertEqual(a.split()[0], b.split()[0], args)
                continue
            self.assertEqual(a, b, "%r: tpc-kv %r, redis-server %r" % (args, a, b))
        # SCAN MATCH "" over every shard: the empty key only; a NUL inside a command's name
        for c in (ours, theirs):
            c.cmd("MSET", "", "1", "a", "2", "b", "3")
            got, cursor = [], b"0"
            while True:
                cursor, keys = c.cmd("SCAN", cursor, "MATCH", "", "COUNT", "100")
                got += keys
                if cursor == b"0":
                    break
            self.assertEqual(got, [b""])
        # (redis-server's answer depends on its hash seed: its lookup hashes the whole name
        # and compares it as a C string)
        self.assertTrue(ours.cmd("GET\0x", "a").startswith("ERR unknown command"))

    def test_sorted_sets_as_redis(self):
        """Random ZADD (every option), ZPOPMIN, ZRANGE (ranks, BYSCORE, BYLEX, REV, LIMIT,
        WITHSCORES), ZSCORE and ZCARD on sets of up to a few thousand members with many equal
        scores, pipelined to tpc-kv and redis-server: the same answers byte for byte."""
        ours, theirs = self.with_redis()
        rnd = random.Random(1717)
        scores = ["0", "1", "-1", "2.5", "1e3", "-inf", "+inf", "0.1", "7"]

        def score():
            return rnd.choice(scores) if rnd.random() < 0.6 else "%.3f" % rnd.uniform(-50, 50)

        def member():
            return "m%d" % rnd.randrange(3000)

        def bound_score():
            b = rnd.choice(scores + ["%.2f" % rnd.uniform(-60, 60)])
            return ("(" if rnd.random() < 0.3 else "") + b

        def bound_lex():
            if rnd.random() < 0.1:
                return rnd.choice(["-", "+"])
            return rnd.choice("[(") + "m%d" % rnd.randrange(3000)

        def command():
            k = rnd.random()
            key = rnd.choice(["za", "zb"])
            if k < 0.35:
                opts = rnd.choice([[], [], ["NX"], ["XX"], ["GT"], ["LT"], ["CH"], ["GT", "CH"],
                                   ["XX", "LT"], ["INCR"], ["NX", "INCR"], ["GT", "INCR"]])
                pairs = 1 if "INCR" in opts else rnd.randint(1, 40)
                args = ["ZADD", key] + opts
                for _ in range(pairs):
                    args += [score(), member()]
                return args
            if k < 0.45:  # every score 0: BYLEX's ground
                return ["ZADD", "lex"] + sum([["0", member()] for _ in range(rnd.randint(1, 30))], [])
            if k < 0.5:
                return ["ZPOPMIN", key] + ([str(rnd.randint(0, 25))] if rnd.random() < 0.7 else [])
            if k < 0.62:
                args = ["ZRANGE", key, str(rnd.randint(-60, 60)), str(rnd.randint(-60, 200))]
                return args + (["REV"] if rnd.random() < 0.3 else []) + \
                    (["WITHSCORES"] if rnd.random() < 0.5 else [])
            if k < 0.8:
                args = ["ZRANGE", key, bound_score(), bound_score(), "BYSCORE"]
                if rnd.random() < 0.4:
                    args.append("REV")
                if rnd.random() < 0.5:
                    args += ["LIMIT", str(rnd.randint(0, 40)), str(rnd.randint(-1, 40))]
                return args + (["WITHSCORES"] if rnd.random() < 0.5 else [])
            if k < 0.9:
                args = ["ZRANGE", "lex", bound_lex(), bound_lex(), "BYLEX"]
                if rnd.random() < 0.4:
                    args.append("REV")
                if rnd.random() < 0.5:
                    args += ["LIMIT", str(rnd.randint(0, 40)), str(rnd.randint(-1, 40))]
                return args
            if k < 0.97:
                return ["ZSCORE", key, member()]
            return ["ZCARD", rnd.choice(["za", "zb", "lex"])]

        for c in (ours, theirs):
            c.cmd("DEL", "za", "zb", "lex")
        for batch in range(40):
            cmds = [command() for _ in range(100)]
            out = b"".join(encode(*a) for a in cmds)
            ours.send(out)
            theirs.send(out)
            for a in cmds:
                got, want = ours.reply(), theirs.reply()
                self.assertEqual(got, want, "%r: tpc-kv %r, redis-server %r" % (a, got, want))
        self.assertEqual(ours.cmd("ZCARD", "lex"), theirs.cmd("ZCARD", "lex"))
        self.assertGreater(ours.cmd("ZCARD", "lex"), 500)

    def test_big_sorted_set(self):
        """A sorted set of 200,000 members is built, read and emptied in O(log n) steps per member:
        with a linear insert or pop it took minutes (each member moved every other)."""
        c = self.conn()
        n, per = 200000, 1000
        t0 = time.monotonic()
        for start in range(0, n, per):
            args = ["ZADD", "big:z"]
            for i in range(start, start + per):
                args += [str((i * 7919) % n), "m%06d" % i]
            c.send(encode(*args))
        for start in range(0, n, per):
            self.assertEqual(c.reply(), per)
        self.assertEqual(c.cmd("ZCARD", "big:z"), n)
        # score (i * 7919) % n is a permutation of 0..n-1: rank k holds score k
        for k in (0, 1, n // 2, n - 1):
            got = c.cmd("ZRANGE", "big:z", str(k), str(k), "WITHSCORES")
            self.assertEqual(got[1], str(k).encode(), k)
            self.assertEqual(c.cmd("ZSCORE", "big:z", got[0]), got[1])
        self.assertEqual(len(c.cmd("ZRANGE", "big:z", "1000", "(1100", "BYSCORE")), 100)
        self.assertEqual(c.cmd("ZRANGE", "big:z", "+inf", "-inf", "BYSCORE", "REV", "LIMIT",
                               str(n - 3), "10", "WITHSCORES")[1::2], [b"2", b"1", b"0"])
        popped = 0
        while popped < n:
            c.send(b"".join(encode("ZPOPMIN", "big:z", per) for _ in range(20)))
            for _ in range(20):
                got = c.reply()
                self.assertEqual(got[1::2], [str(popped + j).encode() for j in range(per)])
                popped += per
        self.assertEqual(c.cmd("EXISTS", "big:z"), 0)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 30 * SLOW, "200,000 members in and out took %.1f s" % elapsed)

    def test_redis_cli(self):
        cli = shutil.which("redis-cli")
        if not cli:
            self.skipTest("redis-cli is not installed")
        run = lambda *a: subprocess.run([cli, "-p", str(self.kv.port), *a], capture_output=True,
                                        timeout=DEADLINE, check=True).stdout.decode()
        self.assertEqual(run("PING"), "PONG\n")
        self.assertEqual(run("SET", "cli:k", "hello world"), "OK\n")
        self.assertEqual(run("GET", "cli:k"), "hello world\n")
        self.assertEqual(run("RPUSH", "cli:l", "a", "b"), "2\n")
        self.assertEqual(run("LRANGE", "cli:l", "0", "-1"), "a\nb\n")
        # A pipe of commands, one per line, as redis-cli reads them from stdin.
        out = subprocess.run([cli, "-p", str(self.kv.port)], input=b"SET cli:x 1\nINCR cli:x\nGET cli:x\n",
                             capture_output=True, timeout=DEADLINE, check=True).stdout.decode()
        self.assertEqual(out, "OK\n2\n2\n")
        # --scan walks every shard.
        c = self.conn()
        for i in range(50):
            c.cmd("SET", "scan:%d" % i, i)
        keys = run("--scan", "--pattern", "scan:*").split()
        self.assertEqual(sorted(keys), sorted("scan:%d" % i for i in range(50)))

    def test_inline_and_byte_at_a_time(self):
        c = self.conn()
        data = b"SET inl \"a b\\x41\"\r\nGET inl\r\n\r\n" + encode("GET", "inl") + b"PING\n"
        for i in range(len(data)):
            c.send(data[i:i + 1])
        self.assertEqual(c.reply(), "OK")
        self.assertEqual(c.reply(), b"a bA")
        self.assertEqual(c.reply(), b"a bA")
        self.assertEqual(c.reply(), "PONG")

    def test_huge_pipeline_in_order(self):
        c = self.conn()
        n = 20000
        out = b"".join(encode("SET", "p:%d" % (i % 97), i) + encode("GET", "p:%d" % (i % 97))
                       for i in range(n))
        t = threading.Thread(target=c.send, args=(out,))
        t.start()
        for i in range(n):
            self.assertEqual(c.reply(), "OK")
            self.assertEqual(c.reply(), str(i).encode())
        t.join()

    def test_large_values(self):
        c = self.conn()
        v = os.urandom(10 << 20)
        t = threading.Thread(target=c.send, args=(encode("SET", "big", v),))
        t.start()
        self.assertEqual(c.reply(), "OK")
        t.join()
        self.assertEqual(c.cmd("STRLEN", "big"), len(v))
        self.assertEqual(c.cmd("GET", "big"), v)
        self.assertEqual(c.cmd("DEL", "big"), 1)

    def test_concurrent_incr(self):
        conns, per = 20, 500

        def work():
            c = Conn(self.kv.port)
            for _ in range(per // 50):
                c.send(encode("INCR", "ctr") * 50)
                for _ in range(50):
                    c.reply()
            c.close()
        self.conn().cmd("DEL", "ctr")
        ts = [threading.Thread(target=work) for _ in range(conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(self.conn().cmd("GET", "ctr"), str(conns * per).encode())

    def test_mset_is_atomic_across_shards(self):
        keys = ["atom:%d" % i for i in range(12)]  # spread over the three shards
        self.assertEqual(self.conn().cmd("MSET", *sum([[k, "0"] for k in keys], [])), "OK")
        stop = threading.Event()
        torn = []

        def writer(w):
            c = Conn(self.kv.port)
            i = 0
            while not stop.is_set():
                i += 1
                v = "%d-%d" % (w, i)
                c.cmd("MSET", *sum([[k, v] for k in keys], []))
            c.close()

        def reader():
            c = Conn(self.kv.port)
            while not stop.is_set():
                vals = c.cmd("MGET", *keys)
                if len(set(vals)) != 1:
                    torn.append(vals)
                    break
            c.close()
        ts = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        ts += [threading.Thread(target=reader) for _ in range(3)]
        for t in ts:
            t.start()
        time.sleep(1.5)  # the workload's length
        stop.set()
        for t in ts:
            t.join()
        self.assertEqual(torn, [])
        # DEL over the shards counts every key once, atomically too.
        self.assertEqual(self.conn().cmd("DEL", *keys, "atom:none"), len(keys))

    def test_info_memory(self):
        c = self.conn()
        c.cmd("FLUSHALL")
        for base in range(0, 60000, 10000):
            c.send(b"".join(encode("SET", "mem:%012d" % i, "xxx") for i in range(base, base + 10000)))
            for _ in range(10000):
                c.reply()
        got = info(c)
        per_key = float(got["tpc_kv_bytes_per_key"])
        if got["mem_allocator"] == "libc":  # (under a sanitizer: its allocator, the Rss)
            self.assertTrue(60 < per_key < 1000, per_key)  # ~120 at a million keys
            self.assertGreater(int(got["used_memory"]), 60000 * 60)
        else:
            self.assertEqual(got["mem_allocator"], "rss")
            self.assertGreater(per_key, 0)
        c.cmd("FLUSHALL")

    def test_info_counts_keys_with_a_time(self):
        """INFO's keyspace line counts the keys that have a time, as redis-server's does, through
        every command that gives, changes or takes one (on three shards, and over MSET/DEL)."""
        ours, theirs = self.with_redis()
        steps = [
            ["FLUSHALL"], ["SET", "a", "1", "EX", "100"], ["SET", "b", "1", "PX", "100000"],
            ["SET", "c", "1"], ["EXPIRE", "c", "100"], ["PEXPIRE", "c", "200000"],
            ["EXPIREAT", "d", "99999999999"], ["SET", "d", "1"], ["EXPIREAT", "d", "99999999999"],
            ["PERSIST", "a"], ["SET", "b", "2"], ["SET", "b", "3", "EX", "5"],
            ["SET", "b", "4", "KEEPTTL"], ["RPUSH", "l", "x"], ["EXPIRE", "l", "50"], ["LPOP", "l"],
            ["SET", "e", "1", "EX", "9"], ["DEL", "e", "a", "b"], ["MSET", "c", "1", "f", "2"],
            ["SET", "g", "1", "EX", "100"], ["SET", "g", "2", "GET"], ["INCR", "c"],
            ["SET", "h", "1", "EX", "100"], ["UNLINK", "h", "zz"], ["SET", "i", "1", "PX", "1"],
        ]
        for step in steps:
            ours.cmd(*step)
            theirs.cmd(*step)
            mine = info(ours)["db0"].split(",")[:2] if "db0" in info(ours) else None
            want = info(theirs).get("db0")
            want = want.split(",")[:2] if want else ["keys=0", "expires=0"]
            if mine is None:
                mine = ["keys=0", "expires=0"]
            if step[-1] == "1" and step[-2] == "PX":  # (gone by now, or about to go, on both)
                continue
            self.assertEqual(mine, want, step)
        until(lambda: info(ours)["db0"].split(",")[:2] == ["keys=4", "expires=1"], "i expired")
        # avg_ttl: what the keys with a time have left, in ms, once active expiry saw them (a
        # running average that FLUSHALL starts afresh)
        self.assertEqual(ours.cmd("FLUSHALL"), "OK")
        self.assertEqual(ours.cmd("SET", "d", "1", "EXAT", "99999999999"), "OK")
        left = lambda: int(info(ours)["db0"].split("avg_ttl=")[1])
        until(lambda: left() > 0, "active expiry's walk came by d")
        want = (99999999999 - time.time()) * 1000
        self.assertTrue(0.99 * want <= left() <= want + 1000, (left(), want))
        self.assertEqual(ours.cmd("FLUSHALL"), "OK")
        self.assertEqual(info(ours)["db0"].split(",")[:2], ["keys=0", "expires=0"])

    def test_info_sections(self):
        # INFO names the sections it answers (as Redis): all of them, or those asked for
        c = self.conn()
        heads = lambda *a: [l for l in c.cmd("INFO", *a).decode().split("\r\n") if l.startswith("#")]
        every = ["# Server", "# Memory", "# Persistence", "# Keyspace"]
        self.assertEqual(heads(), every)
        self.assertEqual(heads("keyspace"), ["# Keyspace"])
        self.assertEqual(heads("MEMORY", "server"), ["# Server", "# Memory"])
        self.assertEqual(heads("everything"), every)
        self.assertEqual(c.cmd("INFO", "nosuch"), b"")
        self.assertTrue(c.cmd("INFO", "keyspace").startswith(b"# Keyspace\r\ndb0:keys="))

    def test_big_command_in_small_pieces(self):
        # 200,001 arguments (3.9 MB) arriving 1 KB at a time: each piece goes on where the last
        # stopped (re-parsed from its start each time, this took minutes).
        c = self.conn()
        c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cmd = encode("MSET", *[a for i in range(100000) for a in ("big:%d" % i, "v")])
        for i in range(0, len(cmd), 1024):
            c.send(cmd[i:i + 1024])
            time.sleep(0.0002)  # paced, so that the server reads it a piece at a time
        self.assertEqual(c.reply(), "OK")
        self.assertEqual(c.cmd("MGET", "big:0", "big:99999"), [b"v", b"v"])
        self.assertEqual(c.cmd("DEL", *["big:%d" % i for i in range(100000)]), 100000)

    def test_flushall_and_keys_see_all_of_an_mset_or_none(self):
        keys = ["atomf:%d" % i for i in range(12)]  # spread over the three shards
        stop = threading.Event()

        def writer():
            c = Conn(self.kv.port)
            while not stop.is_set():
                c.cmd("MSET", *sum([[k, "v"] for k in keys], []))
            c.close()
        ts = [threading.Thread(target=writer) for _ in range(2)]
        for t in ts:
            t.start()
        c = self.conn()
        try:
            for _ in range(300):  # a FLUSHALL between an MSET's parts would leave some keys
                self.assertEqual(c.cmd("FLUSHALL"), "OK")
                self.assertIn(c.cmd("EXISTS", *keys), (0, len(keys)))
                self.assertIn(len(c.cmd("KEYS", "atomf:*")), (0, len(keys)))
        finally:
            stop.set()
            for t in ts:
                t.join()

    def test_hashtags_share_a_shard(self):
        c = self.conn()
        self.assertEqual(c.cmd("MSET", "{user1}:a", "1", "{user1}:b", "2"), "OK")
        self.assertEqual(c.cmd("MGET", "{user1}:a", "{user1}:b"), [b"1", b"2"])

    def test_expiry_lazy_and_active(self):
        c = self.conn()
        c.cmd("FLUSHALL")
        self.assertEqual(c.cmd("SET", "e:lazy", "v", "PX", "50"), "OK")
        pttl = c.cmd("PTTL", "e:lazy")
        self.assertTrue(0 < pttl <= 50, pttl)
        until(lambda: c.cmd("GET", "e:lazy") is None, "the key to expire")
        for i in range(300):
            c.cmd("SET", "e:%d" % i, "v", "PX", "30")
        c.cmd("SET", "e:stays", "v")
        # Nobody touches them: the shards' timers remove them.
        until(lambda: c.cmd("DBSIZE") == 1, "active expiry")
        self.assertEqual(c.cmd("EXISTS", "e:stays"), 1)
        # A large table: each tick walks a share of it (64 buckets a tick took minutes here).
        for base in range(0, 100000, 10000):
            c.send(b"".join(encode("SET", "e:%d" % i, "v", "PX", "100")
                            for i in range(base, base + 10000)))
            for _ in range(10000):
                c.reply()
        until(lambda: c.cmd("DBSIZE") == 1, "active expiry of 100,000 keys")

    def test_quit_then_garbage(self):
        """Nothing after QUIT is read, not even a protocol error: the replies before it go out
        (they were all lost, the SET run all the same)."""
        want = None
        r = RedisServer.start()
        if r:
            self.addCleanup(r.stop)
        for port in ([r.port] if r else []) + [self.kv.port]:
            s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            s.sendall(b"SET quit:k 1\r\nPING\r\nQUIT\r\n*x\r\n")
            got = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
            s.close()
            if want is None:
                want = got  # redis-server's, when it is there
            self.assertEqual(got, want if r else b"+OK\r\n+PONG\r\n+OK\r\n")
        self.assertEqual(self.conn().cmd("GET", "quit:k"), b"1")

    def test_connection_gives_back_a_big_pipeline(self):
        """A connection that once answered a big pipeline does not keep its reply space."""
        c = self.conn()
        if info(c).get("mem_allocator") != "libc":
            self.skipTest("the allocator's figures are not glibc's (a sanitizer's malloc)")
        c.cmd("SET", "bigp", "v" * (1 << 20))
        before = int(info(c)["used_memory"])
        c.send(b"".join(encode("GET", "bigp") for _ in range(100)))  # 100 MiB of replies
        for _ in range(100):
            self.assertEqual(len(c.reply()), 1 << 20)
        self.assertLess(int(info(c)["used_memory"]), before + (20 << 20))
        c.cmd("DEL", "bigp")

    def test_scan_of_a_table_emptied(self):
        """A table that lost nearly all its keys is scanned in few calls: tables shrink, and a
        call walks on until COUNT keys or ten times COUNT buckets (it walked COUNT buckets:
        thousands of calls for five keys)."""
        c = self.conn()
        c.send(b"".join(encode("SET", "sparse:%d" % i, 1) for i in range(30000)))
        for _ in range(30000):
            c.reply()
        c.send(b"".join(encode("DEL", "sparse:%d" % i) for i in range(5, 30000)))
        for _ in range(5, 30000):
            c.reply()
        seen, calls, cursor = set(), 0, b"0"
        while True:
            cursor, keys = c.cmd("SCAN", cursor, "MATCH", "sparse:*", "COUNT", "10")
            seen.update(keys)
            calls += 1
            if cursor == b"0":
                break
        self.assertEqual(seen, {b"sparse:%d" % i for i in range(5)})
        self.assertLess(calls, 400, calls)
        c.cmd("DEL", *("sparse:%d" % i for i in range(5)))

    def test_limits(self):
        # A bulk limit past 1 GiB is refused: a command must fit a log record (32-bit length).
        p = subprocess.run([KV, "--port", "0", "--max-bulk", str((1 << 30) + 1)],
                           capture_output=True, timeout=DEADLINE)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--max-bulk is at most 1073741824", p.stderr)
        kv = Server(shards=1, args=("--max-bulk", "1000", "--max-args", "10"))
        self.addCleanup(kv.kill_if_running)
        try:
            c = Conn(kv.port)
            self.addCleanup(c.close)
            self.assertEqual(c.cmd("SET", "k", "x" * 1000), "OK")
            c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n")
            self.assertIn("invalid bulk length", c.reply())
            self.assertRaises(EOFError, c.reply)  # closed after a protocol error
            c = Conn(kv.port)
            self.addCleanup(c.close)
            self.assertIn("invalid multibulk length", c.cmd(*["x"] * 11))
            c = Conn(kv.port)
            self.addCleanup(c.close)
            c.send(b"GET " + b"x" * (70 * 1024))
            self.assertIn("too big inline request", c.reply())
            c = Conn(kv.port)
            self.addCleanup(c.close)
            c.send(b"*1\r\n$-3\r\n")
            self.assertIn("invalid bulk length", c.reply())
            c = Conn(kv.port)
            self.addCleanup(c.close)
            # Commands before a protocol error in the same read run and are answered first.
            c.send(encode("SET", "pe", "1") + encode("INCR", "pe") + b"*x\r\n" + encode("INCR", "pe"))
            self.assertEqual((c.reply(), c.reply()), ("OK", 2))
            self.assertIn("invalid multibulk length", c.reply())
            self.assertRaises(EOFError, c.reply)
            c = Conn(kv.port)
            self.addCleanup(c.close)
            self.assertEqual(c.cmd("GET", "pe"), b"2")
            self.assertEqual(c.cmd("PING"), "PONG")  # the server lives on
        finally:
            self.assertEqual(kv.stop(), 0)

    def test_wrong_type_and_arity(self):
        c = self.conn()
        c.cmd("SET", "wt", "1")
        self.assertTrue(c.cmd("LPUSH", "wt", "x").startswith("WRONGTYPE"))
        self.assertEqual(c.cmd("HGET", "wt"), "ERR wrong number of arguments for 'hget' command")
        self.assertEqual(c.cmd("INCRBY", "wt", "1.5"), "ERR value is not an integer or out of range")
        self.assertEqual(c.cmd("QUIT"), "OK")
        self.assertRaises(EOFError, c.reply)


class Durability(unittest.TestCase):
    """--appendonly yes: what was acknowledged survives a restart, SIGKILL included."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def start(self, fsync="always", shards=2, min_rewrite=None, preexec_fn=None):
        more = ("--auto-aof-rewrite-min-size", str(min_rewrite)) if min_rewrite else ()
        kv = Server(shards=shards, args=("--appendonly", "yes", "--appendfsync", fsync,
                                         "--dir", self.dir.name, *more), preexec_fn=preexec_fn)
        self.addCleanup(kv.kill_if_running)
        return kv

    def test_a_stop_whose_log_cannot_be_written_fails(self):
        """SIGTERM while the log cannot be written (the file size limit, as a full disk): the
        stop says so and exits 1, not 0 (a clean stop's status): the last writes are not on
        disk."""
        def small_files():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        kv = self.start("everysec", shards=1, preexec_fn=small_files)
        c = Conn(kv.port)
        value = "v" * (256 << 10)
        for i in range(16):
            if isinstance(c.cmd("SET", "k%d" % i, value), RespError):
                break
        until(lambda: info(c)["aof_last_write_status"] == "err", "the log's failure")
        c.close()
        self.assertEqual(kv.stop(), 1)
        self.assertIn("the logs were not all written at the stop", "".join(kv.out))

    def test_a_log_that_cannot_be_written(self):
        """A log write that fails (here the file size limit, as a full disk would): write
        commands are refused with MISCONF while reads go on; the writer tries again each second
        and, once it can, every write acknowledged (or, with always, waiting for its reply) is
        in the log. It had given up for good: every later write lost, or every command refused."""
        limit = 3 << 20

        def small_files():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        value = "v" * (256 << 10)
        for fsync in ("everysec", "always"):
            shutil.rmtree(self.dir.name)
            os.mkdir(self.dir.name)
            kv = self.start(fsync, shards=1, preexec_fn=small_files)
            c, other = Conn(kv.port), Conn(kv.port)
            acked = []
            for i in range(64):  # everysec: acknowledged before the log's write
                c.send(encode("SET", "k%d" % i, value))
                if fsync == "always" and i > 4:  # its write may be the one that failed
                    got = []
                    t = threading.Thread(target=lambda: got.append(c.reply()))
                    t.start()
                    until(lambda: got or info(other)["aof_last_write_status"] == "err",
                          "a reply or the log's failure")
                    if not got:
                        break
                    t.join()
                    reply = got[0]
                else:
                    reply = c.reply()
                if isinstance(reply, RespError):
                    self.assertTrue(reply.startswith("MISCONF Errors writing to the AOF"), reply)
                    break
                self.assertEqual(reply, "OK")
                acked.append(i)
            until(lambda: info(other)["aof_last_write_status"] == "err", "the log's failure")
            self.assertEqual(other.cmd("PING"), "PONG")
            self.assertEqual(other.cmd("GET", "k0"), value.encode())
            refused = other.cmd("SET", "refused", "x")
            self.assertTrue(isinstance(refused, RespError) and refused.startswith("MISCONF"),
                            refused)
            resource.prlimit(kv.p.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            until(lambda: info(other)["aof_last_write_status"] == "ok", "the log written again")
            if fsync == "always" and t.is_alive():  # the write that waited is answered now
                t.join(DEADLINE)
                self.assertEqual(got, ["OK"])
                acked.append(i)
            self.assertEqual(other.cmd("SET", "after", "x"), "OK")
            c.close()
            other.close()
            self.assertEqual(kv.stop(), 0)
            self.assertIn("trying again each second", "".join(kv.out))
            kv = self.start(fsync, shards=1)
            c = Conn(kv.port)
            self.assertGreater(len(acked), 4)
            for i in acked:
                self.assertEqual(c.cmd("STRLEN", "k%d" % i), len(value), (fsync, i))
            self.assertEqual(c.cmd("GET", "after"), b"x")
            self.assertIsNone(c.cmd("GET", "refused"))
            c.close()
            self.assertEqual(kv.stop(), 0)

    def test_reads_go_on_while_a_round_fails(self):
        """appendfsync always: a read that waits for the records appended before it is answered
        when their round's write fails (as a read that comes after the failure is), not only
        once the log can be written again. (A failed round told nobody waiting for progress.)"""
        limit = 16 << 20

        def small_files():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        kv = self.start("always", shards=1, preexec_fn=small_files)
        if not info_direct(self):
            kv.stop()
            self.skipTest("no O_DIRECT in the test's directory")
        a, b, other = Conn(kv.port), Conn(kv.port), Conn(kv.port)
        self.assertEqual(a.cmd("SET", "k0", "v0"), "OK")
        # The SET's round writes 16 MiB, tens of milliseconds, before it meets the limit; the
        # round takes its place in the file as it goes out, so once the log's size says so the
        # GET comes while the write is out, and waits for it.
        value = "v" * (20 << 20)
        a.send(encode("SET", "big", value))
        until(lambda: int(info(other)["aof_current_size"]) > (20 << 20), "the round out")
        b.send(encode("GET", "k0"))
        got = []
        t = threading.Thread(target=lambda: got.append(b.reply()), daemon=True)
        t.start()
        until(lambda: info(other)["aof_last_write_status"] == "err", "the log's failure")
        t.join(DEADLINE)
        self.assertEqual(got, [b"v0"])
        self.assertEqual(info(other)["aof_last_write_status"], "err")  # answered meanwhile
        resource.prlimit(kv.p.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.assertEqual(a.reply(), "OK")  # the round, written again once it can be
        self.assertEqual(other.cmd("STRLEN", "big"), len(value))
        for c in (a, b, other):
            c.close()
        self.assertEqual(kv.stop(), 0)

    def test_a_round_without_memory(self):
        """appendfsync always: a round whose buffer cannot be had (memory ran out) counts as a
        failed write: write commands are refused, the shard goes on answering, the writer tries
        again each second, and a stop says the log was not all written. (The writer went round
        without ever yielding: the shard stalled, PING unanswered.)"""
        preload = os.environ.get("KV_NOMEM_PRELOAD")
        if not preload:
            self.skipTest("no preload (a sanitizer's build)")

        def nomem():
            os.environ["LD_PRELOAD"] = preload
            os.environ["KV_TEST_NOMEM"] = "1"
        kv = self.start("always", shards=1, preexec_fn=nomem)
        if not info_direct(self):
            kv.stop()
            self.skipTest("no O_DIRECT in the test's directory")
        a, other = Conn(kv.port), Conn(kv.port)
        self.assertEqual(a.cmd("SET", "small", "x"), "OK")  # a round of a block is had
        a.send(encode("SET", "big", "v" * (2 << 20)))  # its round's 2 MiB are not
        until(lambda: info(other)["aof_last_write_status"] == "err", "the log's failure")
        self.assertEqual(other.cmd("PING"), "PONG")
        self.assertEqual(other.cmd("GET", "small"), b"x")
        refused = other.cmd("SET", "refused", "x")
        self.assertTrue(isinstance(refused, RespError) and refused.startswith("MISCONF"), refused)
        a.close()
        other.close()
        self.assertEqual(kv.stop(), 1)
        out = "".join(kv.out)
        self.assertIn("cannot write its log", out)
        self.assertIn("the logs were not all written at the stop", out)

    def test_restart_keeps_writes(self):
        for fsync in ("always", "everysec", "no"):
            kv = self.start(fsync)
            c = Conn(kv.port)
            fields = info(c)
            try:  # with always, each shard writes its log O_DIRECT where the filesystem can
                os.close(os.open(os.path.join(self.dir.name, "tpc-kv-0.aof"), os.O_RDWR | os.O_DIRECT))
                direct = 2 if fsync == "always" else 0
            except OSError:
                direct = 0
            self.assertEqual(fields["tpc_kv_aof_direct_shards"], str(direct), fsync)
            got = c.cmd("CONFIG", "GET", "appendonly", "append*", "dir")  # each once
            self.assertEqual(dict(zip(got[::2], got[1::2])), {
                b"appendonly": b"yes", b"appendfsync": fsync.encode(), b"dir": self.dir.name.encode()})
            self.assertEqual(len(got), 6)
            self.assertEqual(c.cmd("FLUSHALL"), "OK")
            self.assertEqual(c.cmd("MSET", *sum([["m:%d" % i, str(i)] for i in range(20)], [])), "OK")
            c.cmd("SET", "ttl", "v", "EX", "1000")
            c.cmd("SET", "gone", "v", "PX", "1")
            c.cmd("RPUSH", "l", "a", "b")
            c.cmd("HSET", "h", "f", "v")
            c.cmd("SADD", "s", "a", "b", "c")
            popped = c.cmd("SPOP", "s")
            c.cmd("ZADD", "z", "1", "a")
            c.cmd("INCRBY", "n", "5")
            c.cmd("SET", "e", "v")
            self.assertEqual(c.cmd("EXPIRE", "e", "2000"), 1)  # logged as PEXPIREAT, seconds
            c.cmd("SET", "pe", "v")
            self.assertEqual(c.cmd("PEXPIRE", "pe", "3000000"), 1)  # milliseconds
            # a time given again (the last one counts), logged as one absolute time
            self.assertEqual(c.cmd("SET", "rep", "v", *["PX", "100"] * 4, "PX", "4000000"), "OK")
            self.assertEqual(c.cmd("EXPIREAT", "pe", "1", "NX"), 0)  # (it has a time)
            c.close()
            self.assertEqual(kv.stop(), 0)  # a clean stop flushes the logs
            kv = self.start(fsync)
            c = Conn(kv.port)
            self.assertEqual(c.cmd("MGET", *["m:%d" % i for i in range(20)]),
                             [str(i).encode() for i in range(20)], fsync)
            self.assertTrue(990 <= c.cmd("TTL", "ttl") <= 1000)
            self.assertIsNone(c.cmd("GET", "gone"))
            self.assertEqual(c.cmd("LRANGE", "l", "0", "-1"), [b"a", b"b"])
            self.assertEqual(c.cmd("HGET", "h", "f"), b"v")
            self.assertEqual(sorted(c.cmd("SMEMBERS", "s") + [popped]), [b"a", b"b", b"c"])
            self.assertEqual(c.cmd("ZSCORE", "z", "a"), b"1")
            self.assertEqual(c.cmd("GET", "n"), b"5")
            self.assertTrue(1990 <= c.cmd("TTL", "e") <= 2000)
            self.assertTrue(2990 <= c.cmd("TTL", "pe") <= 3000)
            self.assertTrue(3990 <= c.cmd("TTL", "rep") <= 4000)
            self.assertEqual(c.cmd("FLUSHDB"), "OK")  # replayed at the next start: nothing left
            c.cmd("SET", "after", "v")
            c.close()
            self.assertEqual(kv.stop(), 0)
            kv = self.start(fsync)
            c = Conn(kv.port)
            self.assertEqual(c.cmd("DBSIZE"), 1, fsync)
            self.assertEqual(c.cmd("GET", "after"), b"v")
            c.close()
            self.assertEqual(kv.stop(), 0)

    def test_times_already_past_replay_as_deletes(self):
        """A command that gives its key a time already past deletes it, and the log says so:
        a replay (which expires nothing until its end) saw the commands after it act on a key
        that was gone when they ran (logged as the time, it came back 11, v and nil)."""
        kv = self.start("always", shards=1)
        c = Conn(kv.port)
        c.cmd("SET", "c", "10")
        self.assertEqual(c.cmd("EXPIRE", "c", "0"), 1)
        self.assertEqual(c.cmd("INCR", "c"), 1)  # a new key
        self.assertEqual(c.cmd("PERSIST", "c"), 0)
        self.assertEqual(c.cmd("SET", "s", "v", "PXAT", "1"), "OK")
        self.assertEqual(c.cmd("EXISTS", "s"), 0)
        c.cmd("SET", "k", "v")
        self.assertEqual(c.cmd("PEXPIRE", "k", "-5"), 1)
        self.assertEqual(c.cmd("SET", "k", "v2", "KEEPTTL"), "OK")
        c.cmd("SET", "at", "v")
        self.assertEqual(c.cmd("PEXPIREAT", "at", "1"), 1)
        self.assertEqual(c.cmd("RPUSH", "at", "x"), 1)
        want = {"c": b"1", "s": None, "k": b"v2"}
        for k, v in want.items():
            self.assertEqual(c.cmd("GET", k), v, k)
        self.assertEqual(c.cmd("TTL", "k"), -1)
        c.close()
        kv.p.kill()  # SIGKILL: the log as it was acknowledged
        kv.p.wait()
        kv.p.stdout.close()
        kv = self.start("always", shards=1)
        c = Conn(kv.port)
        for k, v in want.items():
            self.assertEqual(c.cmd("GET", k), v, k)
        self.assertEqual(c.cmd("TTL", "k"), -1)
        self.assertEqual(c.cmd("LRANGE", "at", "0", "-1"), [b"x"])
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_group_commit(self):
        # appendfsync always: 400 writes that arrive together are acknowledged after a few log
        # writes (each its own sync), not one each.
        kv = self.start("always", shards=2)
        c = Conn(kv.port)
        before = int(info(c)["tpc_kv_aof_writes"])
        c.send(b"".join(encode("SET", "gc:%d" % i, i) for i in range(400)))
        self.assertEqual([c.reply() for _ in range(400)], ["OK"] * 400)
        rounds = int(info(c)["tpc_kv_aof_writes"]) - before
        self.assertTrue(1 <= rounds <= 40, rounds)
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_rounds_out_at_once_lose_nothing(self):
        """appendfsync always with many connections sending deep pipelines at once: rounds go
        out while others are still with the disk (up to four), so commands arrive while the
        writer waits for a free one. Every command is answered, in order, and every answered
        one is there after a restart (a writer that took a round's bytes before it waited
        dropped what came meanwhile, and acknowledged it with the next round)."""
        kv = self.start("always", shards=1)
        conns = [Conn(kv.port) for _ in range(16)]
        before = int(info(conns[0])["tpc_kv_aof_writes"])
        for wave in range(3):
            for n, c in enumerate(conns):
                c.send(b"".join(encode("SET", "r:%d:%d:%d" % (wave, n, i), "v%d" % i)
                                for i in range(300)))
            for c in conns:
                self.assertEqual([c.reply() for _ in range(300)], ["OK"] * 300)
        rounds = int(info(conns[0])["tpc_kv_aof_writes"]) - before
        self.assertGreaterEqual(rounds, 2)
        for c in conns:
            c.close()
        self.assertEqual(kv.stop(), 0)
        kv = self.start("always", shards=1)
        c = Conn(kv.port)
        c.send(b"".join(encode("GET", "r:%d:%d:%d" % (w, n, i))
                        for w in range(3) for n in range(16) for i in range(300)))
        got = [c.reply() for _ in range(3 * 16 * 300)]
        want = [("v%d" % i).encode() for w in range(3) for n in range(16) for i in range(300)]
        self.assertEqual(sum(g != x for g, x in zip(got, want)), 0)
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_replay_expires_nothing_on_the_way(self):
        # Keys whose first time passed before the restart but that later records kept (PERSIST,
        # a later PEXPIRE) are there after it; one that INCR changed after its time was set is
        # gone, as in Redis (nothing expires while a log is loaded; what has expired goes after).
        kv = self.start("everysec")
        c = Conn(kv.port)
        c.cmd("SET", "p", "v", "PX", "300")
        self.assertEqual(c.cmd("PERSIST", "p"), 1)
        c.cmd("SET", "r", "v", "PX", "300")
        self.assertEqual(c.cmd("PEXPIRE", "r", "100000"), 1)
        c.cmd("SET", "q", "5", "PX", "300")
        self.assertEqual(c.cmd("INCR", "q"), 6)
        c.cmd("SET", "k", "v")
        self.assertEqual(c.cmd("PEXPIRE", "k", "300"), 1)
        self.assertEqual(c.cmd("SET", "k", "w", "KEEPTTL"), "OK")
        c.close()
        time.sleep(0.4)  # the 300 ms pass (a bound: the times are wall-clock instants)
        self.assertEqual(kv.stop(), 0)
        kv = self.start("everysec")
        c = Conn(kv.port)
        self.assertEqual((c.cmd("GET", "p"), c.cmd("TTL", "p")), (b"v", -1))
        self.assertEqual(c.cmd("GET", "r"), b"v")
        self.assertTrue(90 <= c.cmd("TTL", "r") <= 100)
        self.assertEqual((c.cmd("GET", "q"), c.cmd("GET", "k")), (None, None))
        self.assertEqual(c.cmd("DBSIZE"), 2)
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_stop_during_multi_shard_writes(self):
        """A stop while connections run MSET and DEL over three shards (their fibers are cancelled
        while they hold or wait for owners' locks, and their unlock messages may run after the
        shards' state is gone): a clean exit, no report, every time."""
        for _ in range(3):
            kv = self.start("everysec", shards=3)
            stop = threading.Event()

            def writer(w):
                try:
                    c = Conn(kv.port)
                    keys = ["s%d:%d" % (w, i) for i in range(9)]
                    while not stop.is_set():
                        c.cmd("MSET", *sum([[k, "v"] for k in keys], []))
                        c.cmd("DEL", *keys)
                except (OSError, EOFError):
                    pass  # the server went away under it
            ts = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
            for t in ts:
                t.start()
            time.sleep(0.3)
            self.assertEqual(kv.stop(), 0)
            stop.set()
            for t in ts:
                t.join()

    def test_sigkill_loses_no_acknowledged_write(self):
        kv = self.start("always", shards=3)
        acked = {}
        stop = threading.Event()

        def load(w):
            c = Conn(kv.port)
            i = 0
            try:
                while not stop.is_set():
                    # a pipeline of 8: the replies arrive after the sync of their batch
                    c.send(b"".join(encode("SET", "k:%d:%d" % (w, i + j), i + j) for j in range(8)))
                    for j in range(8):
                        if c.reply() != "OK":
                            return
                        acked[(w, i + j)] = True
                    i += 8
            except (OSError, EOFError):
                pass  # the server was killed
            finally:
                c.close()
        ts = [threading.Thread(target=load, args=(w,)) for w in range(6)]
        for t in ts:
            t.start()
        until(lambda: len(acked) >= 2000, "writes to be acknowledged")
        kv.p.kill()  # SIGKILL in the middle of the load
        kv.p.wait()
        stop.set()
        for t in ts:
            t.join()
        kv.p.stdout.close()
        kv = self.start("always", shards=3)
        c = Conn(kv.port)
        missing = [k for k in acked if c.cmd("GET", "k:%d:%d" % k) != str(k[1]).encode()]
        c.close()
        self.assertEqual(kv.stop(), 0)
        self.assertEqual(missing, [], "%d of %d acknowledged writes lost" % (len(missing), len(acked)))

    def test_sigkill_during_multi_shard_writes(self):
        """SIGKILL while connections MSET groups of keys over three shards (each MSET writes one
        number to all of its group's keys) and logs are rewritten meanwhile: after the restart
        every group's keys hold one number (no MSET half there), with always at least the last
        acknowledged one."""
        for fsync in ("always", "everysec"):
            kv = self.start(fsync, shards=3, min_rewrite=256 * 1024)
            acked = {}
            stop = threading.Event()

            def load(w):
                c = Conn(kv.port)
                keys = ["g%d:%d" % (w, i) for i in range(6)]
                n = 0
                try:
                    while not stop.is_set():
                        n += 1
                        if c.cmd("MSET", *sum([[k, n] for k in keys], [])) != "OK":
                            return
                        acked[w] = n
                except (OSError, EOFError):
                    pass  # the server was killed
                finally:
                    c.close()
            ts = [threading.Thread(target=load, args=(w,)) for w in range(6)]
            for t in ts:
                t.start()
            c = Conn(kv.port)
            until(lambda: sum(acked.values()) >= 3000 // SLOW, "MSETs acknowledged (%s)" % fsync)
            self.assertEqual(c.cmd("BGREWRITEAOF"), "Background append only file rewriting started")
            until(lambda: sum(acked.values()) >= 6000 // SLOW, "more MSETs (%s)" % fsync)
            c.close()
            kv.p.kill()  # SIGKILL in the middle of the load (and perhaps of a rewrite)
            kv.p.wait()
            stop.set()
            for t in ts:
                t.join()
            kv.p.stdout.close()
            kv = self.start(fsync, shards=3)
            c = Conn(kv.port)
            for w in range(6):
                got = {c.cmd("GET", "g%d:%d" % (w, i)) for i in range(6)}
                self.assertEqual(len(got), 1, "group %d torn: %r (%s)" % (w, got, fsync))
                if w in acked and fsync == "always":  # (everysec acknowledges before writing)
                    self.assertGreaterEqual(int(got.pop()), acked[w], (w, fsync))
            c.close()
            self.assertEqual(kv.stop(), 0)
            for name in os.listdir(self.dir.name):
                os.unlink(os.path.join(self.dir.name, name))

    def test_rewrites_under_steady_writes(self):
        # Writers that never pause: with everysec a rewrite used to wait for a sync that passed
        # with no new record (never, under this load); with always the records that came in
        # while the switch waited for the zeroer were dropped though acknowledged.
        for fsync in ("everysec", "always"):
            kv = self.start(fsync, shards=1)
            acked = [0] * 2
            stop = threading.Event()

            def load(w):  # pipelines of 1000, the replies counted, not parsed: a steady load
                c = Conn(kv.port)
                batch = encode("INCR", "ctr:%d" % w) * 1000
                try:
                    while not stop.is_set():
                        c.send(batch)
                        n = 0
                        while n < 1000:
                            c._fill()
                            n += c.buf.count(b"\r\n")
                            c.buf = c.buf[c.buf.rfind(b"\r\n") + 2:]
                        acked[w] += 1000
                except (OSError, EOFError):
                    pass  # the server was killed
                finally:
                    c.close()
            ts = [threading.Thread(target=load, args=(w,)) for w in range(2)]
            for t in ts:
                t.start()
            c = Conn(kv.port)
            for r in range(1, 6):
                until(lambda: sum(acked) > 50000 * r, "writes between rewrites")
                self.assertEqual(c.cmd("BGREWRITEAOF"),
                                 "Background append only file rewriting started")
                until(lambda: info(c)["aof_rewrites"] == str(r), "rewrite %d (%s)" % (r, fsync))
            c.close()
            if fsync == "always":
                kv.p.kill()  # in the middle of the load: every acknowledged INCR must be there
                kv.p.wait()
                kv.p.stdout.close()
            stop.set()
            for t in ts:
                t.join()
            if fsync == "everysec":
                self.assertEqual(kv.stop(), 0)
            kv = self.start(fsync, shards=1)
            c = Conn(kv.port)
            got = [int(c.cmd("GET", "ctr:%d" % w)) for w in range(2)]
            c.close()
            self.assertEqual(kv.stop(), 0)
            for w in range(2):  # (with always, up to one pipeline more than acknowledged)
                self.assertTrue(acked[w] <= got[w] <= acked[w] + (1000 if fsync == "always" else 0),
                                (fsync, w, acked[w], got[w]))
            shutil.rmtree(self.dir.name)
            os.mkdir(self.dir.name)

    def test_torn_and_corrupt_tails(self):
        kv = self.start("always", shards=3)
        c = Conn(kv.port)
        for i in range(50):
            c.cmd("SET", "t:%d" % i, i)
        c.close()
        self.assertEqual(kv.stop(), 0)
        logs = [os.path.join(self.dir.name, "tpc-kv-%d.aof" % i) for i in range(3)]
        ends = [records_end(p) for p in logs]
        with open(logs[0], "r+b") as f:  # a record cut short, as by a crash mid-append
            f.truncate(ends[0])
            f.seek(ends[0])
            f.write(b"\x40\x00\x00\x00\x12\x34\x56\x78*3\r\n$3\r\nSET")
        with open(logs[1], "r+b") as f:  # the last record's last byte damaged
            f.seek(ends[1] - 3)
            f.write(b"#")
        with open(logs[2], "r+b") as f:  # a stale block past the zeros, as by a torn write
            f.seek(ends[2] + 5000)
            f.write(b"stale")
        kv = self.start("always", shards=3)
        text = "".join(kv.out)
        self.assertIn("a torn record", text)
        self.assertIn("checksum does not match", text)
        self.assertIn("not zeros after the zeros", text)
        cuts = sorted(f for f in os.listdir(self.dir.name) if ".cut-" in f)
        self.assertEqual(len(cuts), 3, cuts)  # what was cut off is kept, each log's
        kept = b"".join(open(os.path.join(self.dir.name, f), "rb").read() for f in cuts)
        for part in (b"*3\r\n$3\r\nSET", b"#", b"stale"):
            self.assertIn(part, kept)
        c = Conn(kv.port)
        have = sum(1 for i in range(50) if c.cmd("GET", "t:%d" % i) == str(i).encode())
        self.assertEqual(have, 49)  # only the damaged record's key is gone
        for i in range(50):  # new records after what was cut off, on every shard
            self.assertEqual(c.cmd("SET", "after:%d" % i, i), "OK")
        c.close()
        self.assertEqual(kv.stop(), 0)
        kv = self.start("always", shards=3)
        self.assertNotIn("cut off", "".join(kv.out))
        c = Conn(kv.port)
        for i in range(50):
            self.assertEqual(c.cmd("GET", "after:%d" % i), str(i).encode())
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_expired_keys_replay_as_they_ran(self):
        # A key whose time passed is logged as deleted when it goes (lazily, by the active
        # walk, or at start-up), so that what ran on it afterwards replays as it ran: without,
        # the replay ran those commands on the old value and dropped the key after.
        kv = self.start("always", shards=2)
        c = Conn(kv.port)
        keys = "abcdefg"
        for k in keys:
            self.assertEqual(c.cmd("SET", k, "5", "PX", "100"), "OK")
        self.assertEqual(c.cmd("SET", "probe", "5", "PX", "100"), "OK")
        until(lambda: c.cmd("PTTL", "probe") == -2, "their time passes")
        got = [c.cmd("INCR", "a"), c.cmd("SETNX", "b", "x"), c.cmd("RPUSH", "c", "x"),
               c.cmd("SET", "d", "new", "NX"), c.cmd("SET", "e", "new", "XX"),
               c.cmd("PERSIST", "f"), c.cmd("PEXPIREAT", "g", str(int(time.time() * 1000) + 3600000))]
        self.assertEqual(got, [1, 1, 1, "OK", None, 0, 0])
        self.assertEqual(c.cmd("SET", "i", "5", "PX", "200"), "OK")
        gone_at = time.time() + 0.2
        c.close()
        kv.p.kill()
        kv.p.wait(timeout=DEADLINE)
        while time.time() < gone_at + 0.05:  # i's time passes while the server is down
            time.sleep(0.01)
        for _ in range(2):
            kv = self.start("always", shards=2)
            c = Conn(kv.port)
            self.assertEqual([c.cmd("GET", "a"), c.cmd("GET", "b"), c.cmd("LRANGE", "c", "0", "-1"),
                              c.cmd("GET", "d"), c.cmd("EXISTS", "e", "f", "g")],
                             [b"1", b"x", [b"x"], b"new", 0])
            if c.cmd("EXISTS", "i") == 0:  # gone at start-up: what follows replays after it
                self.assertEqual(c.cmd("INCR", "i"), 1)
            self.assertEqual(c.cmd("GET", "i"), b"1")
            c.close()
            kv.p.kill()
            kv.p.wait(timeout=DEADLINE)

    def test_log_cut_inside_a_pad(self):
        # A log cut inside a pad record's filler (the pad says: records go on at the next 4 KiB
        # boundary, past the end) ends at the pad: what is appended next is replayed (it landed
        # where the pad said to skip, and was lost without a word).
        if not info_direct(self):
            self.skipTest("no O_DIRECT here: no pad records")
        kv = self.start("always", shards=1)
        c = Conn(kv.port)
        for i in range(5):
            self.assertEqual(c.cmd("SET", "k%d" % i, i), "OK")
        c.close()
        self.assertEqual(kv.stop(), 0)
        path = os.path.join(self.dir.name, "tpc-kv-0.aof")
        with open(path, "rb") as f:
            data = f.read()
        pads = [o for o in range(16, len(data) - 8)
                if data[o:o + 8] == b"\xff\xff\xff\xffPAD!" and o >= records_end(path)]
        self.assertTrue(pads, "a pad after the records")
        with open(path, "r+b") as f:
            f.truncate(pads[0] + 8 + 100)
        kv = self.start("everysec", shards=1)
        self.assertIn("a pad record cut short", "".join(kv.out))
        c = Conn(kv.port)
        for i in range(5):
            self.assertEqual(c.cmd("SET", "new%d" % i, i), "OK")
        c.close()
        self.assertEqual(kv.stop(), 0)
        kv = self.start("everysec", shards=1)
        c = Conn(kv.port)
        self.assertEqual(c.cmd("MGET", *["new%d" % i for i in range(5)] + ["k4"]),
                         [b"0", b"1", b"2", b"3", b"4", b"4"])
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_missing_log_is_refused(self):
        # One shard's log gone while the others are there: tpc-kv says which and does not
        # start (it started that shard empty, silently, and wrote a new log over the loss).
        kv = self.start("everysec", shards=2)
        c = Conn(kv.port)
        c.cmd("MSET", *sum([["m:%d" % i, str(i)] for i in range(20)], []))
        c.close()
        self.assertEqual(kv.stop(), 0)
        os.unlink(os.path.join(self.dir.name, "tpc-kv-1.aof"))
        with self.assertRaises(AssertionError) as e:
            self.start("everysec", shards=2)
        self.assertIn("has the logs of 1 of 2 shards; missing: tpc-kv-1.aof", str(e.exception))
        # Another shard count is refused before any shard makes a log with it (a third shard
        # wrote tpc-kv-2.aof, and the next start then refused that).
        with self.assertRaises(AssertionError) as e:
            self.start("everysec", shards=3)
        self.assertIn("tpc-kv-0.aof was written by 2 shards: run with --shards 2", str(e.exception))
        self.assertEqual(sorted(os.listdir(self.dir.name)), ["tpc-kv-0.aof"])
        # Logs with no record yet (a first start cut short between the shards' creations of
        # theirs): a start, not a refusal for good.
        log0 = os.path.join(self.dir.name, "tpc-kv-0.aof")
        with open(log0, "rb") as f:
            header = f.read(16)
        with open(log0, "wb") as f:
            f.write(header)
        kv = self.start("everysec", shards=2)
        c = Conn(kv.port)
        self.assertEqual(c.cmd("DBSIZE"), 0)
        c.close()
        self.assertEqual(kv.stop(), 0)
        os.unlink(log0)
        os.unlink(os.path.join(self.dir.name, "tpc-kv-1.aof"))
        kv = self.start("everysec", shards=2)  # every log removed: an empty start
        c = Conn(kv.port)
        self.assertEqual(c.cmd("DBSIZE"), 0)
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_multi_shard_write_seen_only_once_on_disk(self):
        # With always, an owner of an MSET over several shards serves no other command on its
        # keys before every part is on disk: a reader that saw the MSET's value (or a write
        # acknowledged on it) must find it after a crash (one owner's log behind another's,
        # the crash between, dropped the MSET whole under what was seen).
        kv = self.start("always", shards=2)
        c = Conn(kv.port)
        paths = [os.path.join(self.dir.name, "tpc-kv-%d.aof" % i) for i in range(2)]

        def shard_of(key):
            before = [record_bytes(p) for p in paths]
            c.cmd("SET", key, "x" * 5000)
            grew = [record_bytes(p) - b for p, b in zip(paths, before)]
            return 0 if grew[0] > grew[1] else 1
        ka = "a"
        kb = next(k for k in ("b%d" % i for i in range(64)) if shard_of(k) != shard_of(ka))
        self.assertEqual(c.cmd("MSET", ka, "10", kb, "10"), "OK")
        big, mset = Conn(kv.port), Conn(kv.port)
        big.send(encode("SET", "{%s}big" % kb, b"z" * (32 << 20)))  # kb's owner: its log behind
        until(lambda: c.cmd("EXISTS", "{%s}big" % kb) == 1, "the big value is in")
        mset.send(encode("MSET", ka, "20", kb, "20"))
        until(lambda: c.cmd("GET", ka) == b"20", "the MSET's value seen")
        kv.p.kill()
        kv.p.wait(timeout=DEADLINE)
        kv = self.start("always", shards=2)
        c = Conn(kv.port)
        self.assertEqual((c.cmd("GET", ka), c.cmd("GET", kb)), (b"20", b"20"))
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_concurrent_rewrites_one_file(self):
        # Two BGREWRITEAOF at once (two connections, one loop turn): one rewrite, not two into
        # the one file (a second header there cut every record after it at the next start).
        kv = self.start("always", shards=1)
        c, d = Conn(kv.port), Conn(kv.port)
        c.send(b"".join(encode("SET", "k%d" % i, i) for i in range(100)))
        self.assertEqual([c.reply() for _ in range(100)], ["OK"] * 100)
        for _ in range(5):
            c.send(encode("BGREWRITEAOF"))
            d.send(encode("BGREWRITEAOF"))
            c.reply(), d.reply()
            until(lambda: info(c)["aof_rewrite_in_progress"] == "0", "the rewrite ends")
        for i in range(3):
            self.assertEqual(c.cmd("SET", "after%d" % i, i), "OK")
        c.close(), d.close()
        kv.p.kill()
        kv.p.wait(timeout=DEADLINE)
        kv = self.start("always", shards=1)
        c = Conn(kv.port)
        self.assertEqual(c.cmd("DBSIZE"), 103)
        self.assertNotIn("cut off", "".join(kv.out))
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_rewrite_while_writing(self):
        kv = self.start("always", shards=2)
        c = Conn(kv.port)
        for r in range(20):  # overwrites: the log grows, the data does not
            c.send(b"".join(encode("SET", "w:%d" % i, "%d-%d" % (r, i)) for i in range(200)))
            for _ in range(200):
                c.reply()
        c.cmd("RPUSH", "w:list", *range(300))
        c.cmd("HSET", "w:hash", *sum([["f%d" % i, i] for i in range(300)], []))
        c.cmd("SADD", "w:set", *range(300))
        c.cmd("ZADD", "w:zset", *sum([[i / 4, "m%d" % i] for i in range(300)], []))
        c.cmd("SET", "w:ttl", "v", "EX", "1000")
        logs = [os.path.join(self.dir.name, "tpc-kv-%d.aof" % i) for i in range(2)]
        before = sum(record_bytes(p) for p in logs)
        for base in range(0, 20000, 1000):  # enough keys that the walk takes a while
            c.send(b"".join(encode("SET", "w:c:%d" % i, 0) for i in range(base, base + 1000)))
            for _ in range(1000):
                c.reply()
        stop = threading.Event()
        counted = [0]
        incrs = {}

        def incr():  # writes go on while the logs are rewritten, over keys not yet written out
            w = Conn(kv.port)
            i = 0
            while not stop.is_set():
                keys = ["w:c:%d" % ((i * 7919 + j * 104729) % 20000) for j in range(16)]
                w.send(b"".join(encode("INCR", k) for k in keys))
                for k in keys:
                    w.reply()
                    incrs[k] = incrs.get(k, 0) + 1
                w.cmd("INCR", "w:ctr")
                w.cmd("LPUSH", "w:list2", "x")
                counted[0] += 1
                i += 1
            w.close()
        t = threading.Thread(target=incr)
        t.start()
        until(lambda: counted[0] > 20, "writes before the rewrite")
        self.assertEqual(c.cmd("BGREWRITEAOF"), "Background append only file rewriting started")
        until(lambda: info(c)["aof_rewrites"] == "2" and info(c)["aof_rewrite_in_progress"] == "0",
              "both shards to rewrite their logs")
        until(lambda: counted[0] > 100, "writes after the rewrite")
        stop.set()
        t.join()
        after = sum(record_bytes(p) for p in logs)
        self.assertLess(after, before + 20000 * 40)
        n = counted[0]
        self.assertEqual(c.cmd("GET", "w:ctr"), str(n).encode())
        c.close()
        self.assertEqual(kv.stop(), 0)
        kv = self.start("always", shards=2)
        c = Conn(kv.port)
        self.assertEqual(c.cmd("MGET", *["w:%d" % i for i in range(200)]),
                         [("19-%d" % i).encode() for i in range(200)])
        self.assertEqual(c.cmd("LRANGE", "w:list", "0", "-1"), [str(i).encode() for i in range(300)])
        self.assertEqual(c.cmd("HLEN", "w:hash"), 300)
        self.assertEqual(c.cmd("HGET", "w:hash", "f299"), b"299")
        self.assertEqual(c.cmd("SCARD", "w:set"), 300)
        self.assertEqual(c.cmd("ZRANGE", "w:zset", "0", "2", "WITHSCORES"),
                         [b"m0", b"0", b"m1", b"0.25", b"m2", b"0.5"])
        self.assertTrue(990 <= c.cmd("TTL", "w:ttl") <= 1000)
        self.assertEqual(c.cmd("GET", "w:ctr"), str(n).encode())
        self.assertEqual(c.cmd("LLEN", "w:list2"), n)
        ctrs = c.cmd("MGET", *["w:c:%d" % i for i in range(20000)])
        wrong = [i for i in range(20000) if ctrs[i] != str(incrs.get("w:c:%d" % i, 0)).encode()]
        self.assertEqual(wrong, [])
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_commit_sizes_around_a_block(self):
        """With appendfsync always each commit starts a 4 KiB block and ends with a pad record;
        commits whose records end 0, 1, 3, 7, 8 bytes before a block boundary (the pad's header
        spills into the next block under 8) or span several blocks survive a restart, and
        writes after the restart follow them."""
        kv = self.start("always", shards=1)
        c = Conn(kv.port)
        # SET pad:k<d> <v bytes>: a record of 8 + 33 + 2 + v bytes with a 2-digit key suffix
        # and a 4-digit value length (see log_records): 4096 - room = v + 43
        sizes, rooms = {}, (0, 1, 3, 7, 8, 9)
        for i, room in enumerate(rooms):
            v = 4096 - room - 43
            sizes["pad:k%02d" % i] = v
        sizes["pad:k90"] = 9000  # a commit over three blocks
        for k, v in sizes.items():
            self.assertEqual(c.cmd("SET", k, k[-1] * v), "OK")  # one commit each
        c.close()
        self.assertEqual(kv.stop(), 0)
        log = os.path.join(self.dir.name, "tpc-kv-0.aof")
        recs = log_records(log)
        ends = sorted((off + n) % 4096 for off, n in recs[-len(sizes):-1])
        if info_direct(self):
            self.assertEqual(ends, sorted((4096 - r) % 4096 for r in rooms))  # as intended
        for round_ in range(2):
            kv = self.start("always", shards=1)
            self.assertNotIn("cut off", "".join(kv.out))
            c = Conn(kv.port)
            for k, v in sizes.items():
                self.assertEqual(c.cmd("GET", k), (k[-1] * v).encode(), k)
            self.assertEqual(c.cmd("SET", "after:%d" % round_, "x"), "OK")
            if round_:
                self.assertEqual(c.cmd("GET", "after:0"), b"x")
            c.close()
            self.assertEqual(kv.stop(), 0)

    def test_multi_shard_writes_whole_after_a_crash(self):
        """An MSET over several shards whose part one log lost (a crash between the owners'
        writes) is left out on every shard at start-up, and stays out after that log alone is
        rewritten (the others hold a TXNABORT for it); one that every log holds stays, its folded
        part counted by the rewritten log's CUT."""
        def logs():
            return [os.path.join(self.dir.name, "tpc-kv-%d.aof" % i) for i in range(3)]
        kv = self.start("everysec", shards=3)
        c = Conn(kv.port)
        sizes = [os.path.getsize(p) for p in logs()]
        for i in range(200):  # which shard owns hashtag {h}: the log that grows
            c.cmd("SET", "{h}:%d" % i, "x" * 40)
        c.close()
        self.assertEqual(kv.stop(), 0)
        grew = [os.path.getsize(p) - sizes[i] for i, p in enumerate(logs())]
        h = grew.index(max(grew))
        keys = ["{h}:m"] + ["m:%d" % i for i in range(12)]
        kv = self.start("everysec", shards=3)
        c = Conn(kv.port)
        self.assertEqual(c.cmd("MSET", *sum([[k, "1"] for k in keys], [])), "OK")
        self.assertEqual(c.cmd("MSET", *sum([[k, "2"] for k in keys], [])), "OK")
        c.close()
        self.assertEqual(kv.stop(), 0)
        owners = []
        for i, p in enumerate(logs()):
            off, size = log_records(p)[-1]
            with open(p, "rb") as f:
                f.seek(off)
                last = f.read(size)
            if b"TXN" in last and b"MSET" in last:
                owners.append(i)
        self.assertIn(h, owners)
        self.assertGreater(len(owners), 1, "the keys fell on one shard")
        with open(logs()[h], "r+b") as f:  # {h}'s part of the second MSET lost
            f.truncate(log_records(logs()[h])[-1][0])
        kv = self.start("everysec", shards=3)
        text = "".join(kv.out)
        self.assertEqual(text.count("left out"), len(owners) - 1, text)
        c = Conn(kv.port)
        self.assertEqual([c.cmd("GET", k) for k in keys], [b"1"] * len(keys))
        c.close()
        self.assertEqual(kv.stop(), 0)
        # One owner's TXNABORT lost too (a crash before it was durable): that log gets its own
        # again, though another log has one (which that log's rewrite may take away).
        q = [i for i in owners if i != h][0]
        off, size = log_records(logs()[q])[-1]
        with open(logs()[q], "r+b") as f:
            f.seek(off)
            self.assertIn(b"TXNABORT", f.read(size))
            f.truncate(off)
        kv = self.start("everysec", shards=3, min_rewrite=64 * 1024)
        text = "".join(kv.out)
        self.assertEqual(text.count("left out"), 1, text)
        self.assertIn("shard %d:" % q, text)
        c = Conn(kv.port)
        self.assertEqual([c.cmd("GET", k) for k in keys], [b"1"] * len(keys))
        for i in range(3000):  # {h}'s log alone grows past the rewrite size
            c.cmd("SET", "{h}:%d" % i, "y" * 100)
        until(lambda: info(c)["aof_rewrites"] != "0" and info(c)["aof_rewrite_in_progress"] == "0",
              "{h}'s log rewritten")
        c.close()
        self.assertEqual(kv.stop(), 0)
        for i, p in enumerate(logs()):  # the rewritten log begins with its CUT, the others not
            with open(p, "rb") as f:
                head = f.read(64)
            self.assertEqual(b"CUT" in head, i == h, i)
        kv = self.start("everysec", shards=3)
        self.assertNotIn("left out", "".join(kv.out))  # said once, and TXNABORT keeps it so
        c = Conn(kv.port)
        self.assertEqual([c.cmd("GET", k) for k in keys], [b"1"] * len(keys))
        # A multi-shard FLUSHALL and DEL come back whole too.
        self.assertEqual(c.cmd("DEL", *keys[1:]), len(keys) - 1)
        self.assertEqual(c.cmd("FLUSHALL"), "OK")
        c.close()
        self.assertEqual(kv.stop(), 0)
        kv = self.start("everysec", shards=3)
        self.assertNotIn("left out", "".join(kv.out))
        c = Conn(kv.port)
        self.assertEqual(c.cmd("DBSIZE"), 0)
        c.close()
        self.assertEqual(kv.stop(), 0)

    def test_log_versions(self):
        """A log of version 1 (before multi-shard records) is replayed and raised to version 2
        before anything is appended, so that a tpc-kv of version 1 refuses it rather than cut it
        off at the first new record; a version this tpc-kv does not know is refused."""
        kv = self.start("everysec", shards=2)
        c = Conn(kv.port)
        for i in range(20):
            c.cmd("SET", "v:%d" % i, i)
        c.close()
        self.assertEqual(kv.stop(), 0)
        logs = [os.path.join(self.dir.name, "tpc-kv-%d.aof" % i) for i in range(2)]
        for p in logs:
            with open(p, "r+b") as f:
                f.seek(8)
                f.write((1).to_bytes(4, "little"))
        kv = self.start("everysec", shards=2)
        c = Conn(kv.port)
        self.assertEqual([c.cmd("GET", "v:%d" % i) for i in range(20)],
                         [str(i).encode() for i in range(20)])
        c.close()
        self.assertEqual(kv.stop(), 0)
        for p in logs:
            with open(p, "rb") as f:
                self.assertEqual(f.read(12)[8:], (2).to_bytes(4, "little"))
        with open(logs[0], "r+b") as f:
            f.seek(8)
            f.write((3).to_bytes(4, "little"))
        p = subprocess.run([KV, "--port", "0", "--shards", "2", "--appendonly", "yes",
                            "--dir", self.dir.name], capture_output=True, timeout=DEADLINE)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"is not a tpc-kv log", p.stderr)

    def test_other_shard_count_refused(self):
        kv = self.start("always", shards=2)
        self.assertEqual(kv.stop(), 0)
        p = subprocess.run([KV, "--port", "0", "--shards", "3", "--appendonly", "yes",
                            "--dir", self.dir.name], capture_output=True, timeout=DEADLINE)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"written by 2 shards: run with --shards 2", p.stderr)


if __name__ == "__main__":
    KV = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
