"""What tpc-proxy's end-to-end tests share (test-proxy.py: TCP mode; test-proxy-http.py: HTTP
mode): the program under test run on a configuration text with its output read line by line,
and a poll for a condition up to a deadline. Each test sets PROXY (its argv[1]) first."""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PROXY = None
SLOW = 4 if os.environ.get("TPC_TEST_SLOW") else 1
DEADLINE = 20 * SLOW


class Proxy:
    """tpc-proxy on a configuration text; its stdout and stderr read line by line."""

    def __init__(self, config, args=()):
        self.dir = tempfile.TemporaryDirectory()
        self.file = os.path.join(self.dir.name, "proxy.ini")
        self.write(config)
        self.lines, self.cond = [], threading.Condition()
        self.p = subprocess.Popen([PROXY, "-c", self.file, "--shards", "2", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        threading.Thread(target=self.read, daemon=True).start()
        self.addr = self.wait_for(r"frontend \w+ listening on (\S+)").group(1)
        self.stats = None
        if "[stats]" in config:
            self.stats = self.wait_for(r"stats http listening on (\S+)").group(1)
        self.wait_for(r"running on")

    def write(self, config):
        with open(self.file + ".tmp", "w") as f:
            f.write(config)
        os.rename(self.file + ".tmp", self.file)

    def read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line.decode(errors="replace"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def wait_for(self, pattern, start=0, timeout=DEADLINE):
        """The match of the first line from index `start` on that matches."""
        end = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if self.lines[i] is None:
                        raise AssertionError("tpc-proxy ended before %r:\n%s" %
                                             (pattern, "".join(self.lines[:-1])))
                    m = re.search(pattern, self.lines[i])
                    if m:
                        return m
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %r within %ss:\n%s" %
                                         (pattern, timeout, "".join(self.lines)))
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def connect(self):
        host, port = self.addr.rsplit(":", 1)
        c = socket.create_connection((host, int(port)), timeout=DEADLINE)
        return c

    def get(self, path):
        with urllib.request.urlopen("http://%s%s" % (self.stats, path), timeout=DEADLINE) as r:
            return r.read().decode()

    def counter(self, name):
        m = re.search(r"^total:.* %s (\d+)" % name, self.get("/stats"), re.M)
        return int(m.group(1))

    def stop(self, sig=signal.SIGTERM):
        if sig and self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("tpc-proxy did not stop")
        with self.cond:  # everything it said, read to its end
            end = time.monotonic() + DEADLINE
            while (not self.lines or self.lines[-1] is not None) and time.monotonic() < end:
                self.cond.wait(0.1)
            if rc != 0:  # its own words on why go with the failure
                sys.stderr.write("tpc-proxy exited with %d:\n%s" %
                                 (rc, "".join(l for l in self.lines if l)))
        self.p.stdout.close()
        self.dir.cleanup()
        return rc


def until(cond, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(0.02)
