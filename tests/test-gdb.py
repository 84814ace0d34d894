#!/usr/bin/env python3
"""The gdb extension (gdb/libtpc-gdb.py) against tests/gdb-target.c: gdb stops the target in
gdb_here(), called from its running main fiber, runs `tpc fibers`, `tpc bt` on fibers of both
shards, `tpc shards`, then lets the target finish, which it does cleanly only if every register
`tpc bt` borrowed was put back. Prints one cmocka-style line per check (scripts/test.sh counts
them) and exits 0, 1 on a failed check, 77 (skipped) without gdb.
    test-gdb.py GDB-TARGET LIBTPC-GDB.PY"""

import os
import re
import shutil
import signal
import subprocess
import sys

SLOW = 3 if os.environ.get("TPC_TEST_SLOW") else 1


def run(argv, timeout, env=None):
    """(exit status, stdout + stderr); the whole process group is killed past timeout."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return None, out + "\n(killed after %d s)\n" % timeout
    return p.returncode, out


class Checks:
    def __init__(self):
        self.failed = 0

    def case(self, name, problems):
        if problems:
            self.failed += 1
            print("[  FAILED  ] %s" % name)
            for p in problems:
                print("    " + p)
        else:
            print("[       OK ] %s" % name)


def section(out, name):
    """The output between the markers `@@name` and the next `@@`."""
    m = re.search(r"^@@%s\n(.*?)(?=^@@)" % re.escape(name), out, re.M | re.S)
    return m.group(1) if m else ""


def fiber_row(fibers, name):
    """(shard, state, rest of the line) of the fiber called name in `tpc fibers`."""
    for line in fibers.splitlines():
        m = re.match(r"\s+(\d+)\s+0x[0-9a-f]+\s+(\w+)\s+(\S+)\s+(.*)$", line)
        if m and m.group(3) == name:
            return int(m.group(1)), m.group(2), m.group(4)
    return None


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    target, script = sys.argv[1], sys.argv[2]
    gdb = shutil.which("gdb")
    if gdb is None:
        print("gdb not found: skipped (scripts/setup.sh installs it)")
        return 77
    checks = Checks()

    rc, out = run([target], 20 * SLOW)
    checks.case("target_alone", [] if rc == 0 and "gdb-target: ok" in out
                else ["exit %s, output:" % rc, out])

    cmds = ["set pagination off", "set confirm off", "set width 0",
            "source " + script, "break gdb_here", "run"]
    for name, cmd in [("fibers", "tpc fibers"), ("bt-sleeper", "tpc bt gdb_sleeper"),
                      ("bt-locker", "tpc bt locker"), ("bt-receiver", "tpc bt receiver"),
                      ("bt-main", "tpc bt main"), ("bt-finished", "tpc bt finished"),
                      ("bt-callee", "tpc bt callee"), ("bt-caller", "tpc bt caller"),
                      ("shards", "tpc shards"), ("after", "bt 2"), ("pause", "shell sleep 1.2"),
                      ("continue", "continue")]:
        cmds += ["echo @@%s\\n" % name, cmd]
    cmds.append("echo @@end\\n")
    argv = [gdb, "-batch", "-nx", "-iex", "set debuginfod enabled off"]
    for c in cmds:
        argv += ["-ex", c]
    # LeakSanitizer cannot run under ptrace: the run alone above checked for leaks.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    rc, out = run(argv + [target], 25 * SLOW, env)
    print(out)
    if "@@fibers" not in out and re.search(r"ptrace: Operation not permitted", out):
        print("gdb may not trace processes here (ptrace refused): skipped")
        return 77
    if rc is None or "@@end" not in out:
        checks.case("gdb_ran", ["gdb did not get through its commands (exit %s)" % rc])
        return 1

    fibers = section(out, "fibers")
    want = [("main", 0, "running", ["gdb_here"]),
            ("sleeper", 0, "waiting", [r"wakes in 3[56]\d\d\.\d s", "in tpc_sleep",
                                       "park_here_sleeping"]),
            ("locker", 0, "waiting", [r"queued on 0x[0-9a-f]+ \(lock\)", "tpc_mutex_lock",
                                      "park_here_locking"]),
            ("finished", 0, "done", []),
            ("callee", 0, "waiting", ["in tpc_sleep", "park_here_sleeping"]),
            ("fresh", 0, "ready", ["not started"]),
            ("receiver", 1, "waiting", ["on the stack of 'receiver'", "tpc_chan_recv",
                                        "park_here_receiving"])]
    problems = []
    for name, shard, state, words in want:
        row = fiber_row(fibers, name)
        if row is None:
            problems.append("fiber '%s' not listed" % name)
            continue
        if row[:2] != (shard, state):
            problems.append("fiber '%s': shard %d, %s; want shard %d, %s"
                            % (name, row[0], row[1], shard, state))
        problems += ["fiber '%s': no '%s' in '%s'" % (name, w, row[2])
                     for w in words if not re.search(w, row[2])]
        if state == "waiting" and not re.match(r"[\d.]+ [mun]?s ", row[2]):
            problems.append("fiber '%s': no time since it parked in '%s'" % (name, row[2]))
    checks.case("fibers_listed", problems)

    problems = []
    for sec, words in [("bt-sleeper", [r"tpc_sleep\w*", "park_here_sleeping", "sleeper"]),
                       ("bt-locker", ["tpc_mutex_lock", "park_here_locking", "locker"]),
                       ("bt-receiver", ["tpc_chan_recv", "park_here_receiving", "receiver"]),
                       ("bt-callee", ["park_here_sleeping", "callee"])]:
        text = section(out, sec)
        problems += ["%s: no frame in %s" % (sec, w) for w in words
                     if not re.search(r"^#\d+ .*\b%s \(" % w, text, re.M)]
    checks.case("bt_suspended", problems)

    text = section(out, "bt-main")
    checks.case("bt_running", [] if re.search(r"^#0 .*gdb_here", text, re.M)
                and "main_fiber" in text else ["bt-main: " + text])
    # The caller joined its callee before it ran: on x86_64's assembly backend the callee runs
    # as its call (core/task.c, join_by_call), elsewhere (ucontext, aarch64; a shuffled run
    # queue may put another fiber first) the caller parks in tpc_join as any joiner.
    row = fiber_row(fibers, "caller")
    called = row is not None and "which runs as its call" in row[2]
    problems = [] if row is not None and row[:2] == (0, "waiting") else ["caller: %r" % (row,)]
    text, callee = section(out, "bt-caller"), section(out, "bt-callee")
    if called:
        problems += [] if "runs as its call" in text else ["bt-caller: " + text]
        problems += ["bt-callee: no frame in %s (into the joiner's frames)" % w
                     for w in ["tpc_join", "caller"]
                     if not re.search(r"^#\d+ .*\b%s \(" % w, callee, re.M)]
    elif not re.search(r"^#\d+ .*\btpc_join \(", text, re.M):
        problems.append("bt-caller (a parked joiner): no frame in tpc_join: " + text)
    checks.case("bt_caller", problems)
    text = section(out, "bt-finished")
    checks.case("bt_done", [] if "no stack" in text else ["bt-finished: " + text])

    shards = section(out, "shards")
    problems = ["no '%s' in tpc shards" % w for w in
                ["shard 0 (", "shard 1 (", "running fiber", "run queue: 1 (1 fibers",
                 "io_uring:", "rings: 1:", "counters: tasks"] if w not in shards]
    if not re.search(r"timers: [1-9]\d* pending", shards):
        problems.append("no pending timer on shard 0 (the sleeper's)")
    checks.case("shards", problems)

    # Registers put back: the stopped thread is where it was, and the target ends cleanly.
    after, cont = section(out, "after"), section(out, "continue")
    checks.case("registers_restored",
                [] if re.search(r"^#0 .*gdb_here", after, re.M)
                and "gdb-target: ok" in cont and "exited normally" in cont
                else ["after: " + after, "continue: " + cont])
    # The stall detector's watchdog, stopped with everything else for over a second, does not
    # take that pause for a stall once the target goes on (core/stall.c).
    checks.case("pause_not_a_stall", [] if "stalled for" not in cont and "SIG38" not in cont
                else ["continue: " + cont])
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
