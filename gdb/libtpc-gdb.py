# libtpc's gdb extension: every fiber of every shard of every runtime in the process, the
# backtrace of any fiber (suspended ones included), and each shard's queues and counters.
#
#   (gdb) source PREFIX/share/libtpc/gdb/libtpc-gdb.py    (gdb also auto-loads it with libtpc.so)
#   (gdb) tpc fibers [-n]          shard, fiber, state, name, for how long, what it waits on
#   (gdb) tpc bt [FIBER [ARGS]]    FIBER's backtrace (an address, an expression or a name);
#                                  ARGS go to `bt` (full, -3 ...); no FIBER: every fiber
#   (gdb) tpc shards               run queue, fibers, io_uring, rings, timers, counters
#
# It reads libtpc's private types (struct tpc__shard, struct tpc_fiber ...), so it needs the
# library's debug info: libtpc carries it in every build unless configured with
# -Ddebuginfo=false. Runtimes are found through the list libtpc keeps of them (`live` in
# core/runtime.c) and, while a runtime starts, through each thread's shard (`tpc__self`).
#
# A suspended fiber's backtrace: its registers, as the context switch saved them
# (core/switch_x86_64.S, core/switch_aarch64.S, or the ucontext backend's ucontext_t), are
# loaded into the selected thread for the length of one `bt`, and the thread's own are put back
# (the syscall-restart register too), so the process must be live and stopped (all-stop mode).
# A running fiber's backtrace is its shard thread's.

import contextlib
import os
import struct
import time

import gdb

STATES = ("ready", "running", "waiting", "done")  # TPC__F_READY ... TPC__F_DONE
TASK_FIBER = 1  # TPC__TASK_FIBER
LIST_LIMIT = 1 << 22  # a longer list is taken for a corrupt one
LIB_DIRS = ("core", "timer", "io", "net")  # libtpc's source folders


# ---- Types, values and lists. ----


def _type(name):
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        raise gdb.GdbError(
            "libtpc: no type '%s': gdb needs libtpc's debug info (built in by default; a "
            "library configured with -Ddebuginfo=false, or stripped, lacks it)" % name
        ) from None


def _field_offset(t, member):
    for f in t.strip_typedefs().fields():
        if f.name == member:
            return f.bitpos // 8
    raise gdb.GdbError("libtpc: %s has no member '%s' (another libtpc version?)" % (t, member))


def _has_field(t, member):
    return any(f.name == member for f in t.strip_typedefs().fields())


def _container(ptr, tname, member):
    t = _type(tname)
    return gdb.Value(int(ptr) - _field_offset(t, member)).cast(t.pointer())


def _stack_classes(s):
    """How many stack classes a shard has (the length of its stk array)."""
    t = s["stk"].type.strip_typedefs()
    lo, hi = t.range()
    return hi - lo + 1


def _walk(head):
    """The nodes (tpc_list *) of the circular list whose head is the tpc_list `head`."""
    h = int(head.address)
    n = head["next"]
    for _ in range(LIST_LIMIT):
        if int(n) == h:
            return
        if int(n) == 0:
            break
        yield n
        n = n["next"]
    raise gdb.GdbError("libtpc: the list at 0x%x is broken or too long" % h)


def _read_u64(addr, count):
    mem = gdb.selected_inferior().read_memory(addr, 8 * count)
    return struct.unpack("<%dQ" % count, bytes(mem))


def _cstr(array):
    mem = bytes(gdb.selected_inferior().read_memory(array.address, array.type.sizeof))
    return mem.split(b"\0", 1)[0].decode("utf-8", "replace")


def _dur(ns):
    a = abs(ns)
    sign = "-" if ns < 0 else ""
    if a < 1000:
        return "%s%d ns" % (sign, a)
    if a < 1000000:
        return "%s%.1f us" % (sign, a / 1e3)
    if a < 1000000000:
        return "%s%.1f ms" % (sign, a / 1e6)
    return "%s%.1f s" % (sign, a / 1e9)


def _symbol_at(addr):
    """'name' or 'name + off' for a global at addr, else ''."""
    try:
        out = gdb.execute("info symbol 0x%x" % addr, to_string=True).strip()
    except gdb.error:
        return ""
    if not out or out.startswith("No symbol"):
        return ""
    return out.split(" in section ")[0]


# ---- Runtimes, shards, fibers. ----


def _runtimes():
    """Every runtime of the process: those in libtpc's list of live runtimes or, when none is
    listed (tpc_start lists a runtime only once its shards run), those of the threads' shards."""
    if gdb.selected_inferior().pid == 0:
        raise gdb.GdbError("libtpc: no process (run the program, attach to it or load a core)")
    rt_type = "struct tpc_runtime *"
    _type("struct tpc_runtime")
    found = []
    try:
        syms = gdb.lookup_static_symbols("live")
    except AttributeError:  # gdb < 10
        sym = gdb.lookup_static_symbol("live")
        syms = [sym] if sym else []
    for sym in syms:
        if str(sym.type.strip_typedefs()) != rt_type:
            continue
        r = sym.value()
        while int(r) and int(r) not in [int(x) for x in found] and len(found) < 4096:
            found.append(r)
            r = r["live_next"]
    if not found:
        for s in _tls_shards():
            rt = s["rt"]
            if int(rt) and int(rt) not in [int(x) for x in found]:
                found.append(rt)
    return found


def _tls_shards():
    """The shard of each thread (tpc__self), when the runtime is not listed yet."""
    shards = []
    with _keep_selection():
        for t in gdb.selected_inferior().threads():
            try:
                t.switch()
                s = gdb.parse_and_eval("tpc__self")
            except gdb.error:
                continue
            if int(s):
                shards.append(s)
    return shards


def _shards(rt):
    n = int(rt["nshards"])
    for i in range(n):
        s = rt["shards"][i]
        if int(s):
            yield i, s


def _thread_of(shard):
    tid = int(shard["tid"])
    for t in gdb.selected_inferior().threads():
        if t.ptid[1] == tid:
            return t
    return None


class Fiber:
    def __init__(self, rt, sid, shard, f):
        self.rt, self.sid, self.shard, self.f = rt, sid, shard, f
        self.addr = int(f)
        self.name = _cstr(f["name"])
        st = int(f["state"])
        self.state = STATES[st] if st < len(STATES) else "state %d" % st
        if int(shard["current"]) == self.addr:
            self.state = "running"
        self.wait = f["wait"] if self.state == "waiting" else None
        if self.wait is not None and not int(self.wait):
            self.wait = None

    def suspended(self):
        return self.state in ("ready", "waiting") and int(self.f["stack"]) != 0


def _fibers(rts=None):
    for rt in _runtimes() if rts is None else rts:
        for sid, s in _shards(rt):
            for node in _walk(s["fibers"]):
                yield Fiber(rt, sid, s, _container(node, "struct tpc_fiber", "all"))


def _find_fiber(arg):
    """The fiber named by arg: an address or expression, else a fiber's name."""
    fibers = list(_fibers())
    addr = None
    try:
        addr = int(gdb.parse_and_eval(arg))
    except (gdb.error, RuntimeError):
        pass
    if addr is not None:
        for fi in fibers:
            if fi.addr == addr:
                return fi
    named = [fi for fi in fibers if fi.name == arg]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise gdb.GdbError(
            "libtpc: %d fibers are named '%s': give an address (%s)"
            % (len(named), arg, ", ".join("0x%x" % fi.addr for fi in named))
        )
    raise gdb.GdbError("libtpc: '%s' is no fiber of any shard (see `tpc fibers`)" % arg)


# ---- A fiber's registers. ----


@contextlib.contextmanager
def _keep_selection():
    thread = gdb.selected_thread()
    level = None
    try:
        level = gdb.selected_frame().level()
    except gdb.error:
        pass
    try:
        yield
    finally:
        if thread is not None and thread.is_valid():
            thread.switch()
            if level is not None:
                _select_level(level)


def _select_level(level):
    try:
        f = gdb.newest_frame()
        for _ in range(level):
            older = f.older()
            if older is None:
                break
            f = older
        f.select()
    except gdb.error:
        pass


def _arch():
    return gdb.selected_inferior().architecture().name()


def _saved_regs(f):
    """[(register, value)] of suspended fiber f as its context switch saved them; pc last."""
    ctx = f["ctx"]
    arch = _arch()
    x86 = "x86-64" in arch
    arm = arch.startswith("aarch64")
    if _has_field(ctx.type, "sp"):  # the assembly backends
        sp = int(ctx["sp"])
        if x86:  # csr word, r15, r14, r13, r12, rbx, rbp, return address
            w = _read_u64(sp, 8)
            return [("r15", w[1]), ("r14", w[2]), ("r13", w[3]), ("r12", w[4]), ("rbx", w[5]),
                    ("rbp", w[6]), ("rsp", sp + 64), ("rip", w[7])]
        if arm:  # x19-x28, x29, x30, d8-d15, fpcr in 176 bytes
            w = _read_u64(sp, 12)
            return [("x%d" % (19 + i), w[i]) for i in range(10)] + [
                ("x29", w[10]), ("x30", w[11]), ("sp", sp + 176), ("pc", w[11])]
    elif _has_field(ctx.type, "uc"):  # -Dcontext=ucontext: swapcontext's ucontext_t
        mc = ctx["uc"]["uc_mcontext"]
        if x86:  # glibc's gregs: R12-R15 4-7, RBP 10, RBX 11, RSP 15, RIP 16
            g = mc["gregs"]
            return [("r12", int(g[4])), ("r13", int(g[5])), ("r14", int(g[6])),
                    ("r15", int(g[7])), ("rbp", int(g[10])), ("rbx", int(g[11])),
                    ("rsp", int(g[15])), ("rip", int(g[16]))]
        if arm:
            r = mc["regs"]
            return [("x%d" % i, int(r[i])) for i in range(19, 31)] + [
                ("sp", int(mc["sp"])), ("pc", int(mc["pc"]))]
    raise gdb.GdbError("libtpc: no fiber backtraces on %s with this context backend" % arch)


def _set_reg(name, value):
    gdb.execute("set $%s = 0x%x" % (name, value & 0xFFFFFFFFFFFFFFFF), to_string=True)


@contextlib.contextmanager
def _fiber_regs(f):
    """Frame 0 of the selected thread is suspended fiber f's innermost frame inside."""
    regs = _saved_regs(f)
    thread = gdb.selected_thread()
    if thread is None:
        raise gdb.GdbError("libtpc: no thread selected: a live process is needed")
    if thread.is_running():
        raise gdb.GdbError("libtpc: the selected thread runs: stop the process (all-stop mode)")
    with _keep_selection():
        frame = gdb.newest_frame()
        frame.select()
        # Writing the pc also clears the syscall-restart register of a thread stopped in a
        # system call (gdb does that): it is saved and put back last.
        names = [n for n, _ in regs]
        for extra in ("orig_rax", "syscallno"):
            try:
                frame.read_register(extra)
                names.append(extra)
            except (ValueError, gdb.error):
                pass
        saved = [(n, int(frame.read_register(n))) for n in names]
        try:
            try:
                for n, v in regs:
                    _set_reg(n, v)
            except gdb.error as e:
                raise gdb.GdbError(
                    "libtpc: cannot load the fiber's registers into the thread (%s): a suspended "
                    "fiber's backtrace needs a live process" % e
                ) from None
            gdb.newest_frame().select()
            yield
        finally:
            for n, v in saved:
                try:
                    _set_reg(n, v)
                except gdb.error:
                    gdb.write("libtpc: could not restore $%s to 0x%x\n" % (n, v), gdb.STDERR)


@contextlib.contextmanager
def _on_fiber(fi):
    """Frame 0 is fiber fi's innermost frame inside; yields False when it has no stack or its
    thread is not found."""
    if fi.state == "running":
        t = _thread_of(fi.shard)
        if t is None:
            yield False
            return
        with _keep_selection():
            t.switch()
            gdb.newest_frame().select()
            yield True
    elif fi.suspended():
        with _fiber_regs(fi.f):
            yield True
    else:
        yield False


def _ctx_start():
    """Where a new context starts: tpc__ctx_trampoline (assembly backends), or `start` in
    core/switch_ucontext.c."""
    sym = gdb.lookup_global_symbol("tpc__ctx_trampoline") or gdb.lookup_static_symbol(
        "tpc__ctx_trampoline")
    if sym is None:
        for cand in gdb.lookup_static_symbols("start"):
            if cand.symtab is not None and cand.symtab.filename.endswith("switch_ucontext.c"):
                sym = cand
    if sym is not None:
        return int(sym.value().address)
    try:
        return int(gdb.parse_and_eval("&tpc__ctx_trampoline"))  # from the ELF symbols
    except gdb.error:
        return None


def _not_started(fi):
    """A fiber that never ran still has its initial context: it resumes where contexts start."""
    if not fi.suspended():
        return False
    try:
        regs = dict(_saved_regs(fi.f))
    except (gdb.error, gdb.GdbError):
        return False
    start = _ctx_start()
    return start is not None and regs.get("rip", regs.get("pc")) == start


_lib_root = []


def _lib_dirs():
    """The library's source folders, from where tpc__park_until was compiled."""
    if not _lib_root:
        root = None
        sym = gdb.lookup_global_symbol("tpc__park_until")
        if sym is None:
            sym = gdb.lookup_static_symbol("tpc__park_until")
        if sym is not None and sym.symtab is not None:
            root = os.path.dirname(os.path.dirname(sym.symtab.fullname()))
        _lib_root.append(root)
    root = _lib_root[0]
    return [os.path.join(root, d) + os.sep for d in LIB_DIRS] if root else []


def _in_lib(frame, dirs):
    sal = frame.find_sal()
    if sal.symtab is not None and dirs:
        path = sal.symtab.fullname()
        return any(path.startswith(d) for d in dirs)
    name = frame.name() or ""
    return name.startswith("tpc_") or name.startswith("tpc__")


def _frame_desc(frame):
    name = frame.name() or "0x%x" % frame.pc()
    sal = frame.find_sal()
    if sal.symtab is not None and sal.line:
        return "%s (%s:%d)" % (name, os.path.basename(sal.symtab.filename), sal.line)
    return name


def _where(fi):
    """'in CALL, called from CALLER (file:line)': the outermost of the libtpc frames the fiber's
    backtrace starts with, and the frame that called it. When no frame of the program's own
    follows (the fiber's function tail-called libtpc), the innermost public call (tpc_...)."""
    dirs = _lib_dirs()
    with _on_fiber(fi) as ok:
        if not ok:
            return ""
        frame = gdb.newest_frame()
        lib = []
        try:
            for _ in range(256):
                if frame is None or not _in_lib(frame, dirs):
                    break
                lib.append(frame)
                frame = frame.older()
        except gdb.error:
            frame = None
        if not lib:
            return "in " + _frame_desc(frame) if frame is not None else ""
        if frame is not None:
            api = lib[-1]
        else:
            public = [f for f in lib if (f.name() or "").startswith("tpc_")
                      and not (f.name() or "").startswith("tpc__")]
            api = public[0] if public else lib[0]
        desc = "in " + (api.name() or "0x%x" % api.pc())
        if frame is not None:
            desc += ", called from " + _frame_desc(frame)
        return desc


# ---- tpc fibers. ----


def _clock(rts):
    """(now in ns of the clock the runtime uses, what it is): the host's CLOCK_MONOTONIC for a
    process gdb runs or attached to here; else the latest clock a shard read."""
    try:
        if gdb.selected_inferior().connection.type == "native":
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            return now, "now, by this host's CLOCK_MONOTONIC"
    except AttributeError:
        pass
    now = 0
    for rt in rts:
        for _, s in _shards(rt):
            now = max(now, int(s["now"]))
    return now, "the latest clock a shard read (not a live process)"


def _stack_owner(addr, fibers):
    """The fiber on whose stack addr lies, or None."""
    for fi in fibers:
        lo = int(fi.f["stack"])
        if lo and lo <= addr < lo + int(fi.f["stack_size"]):
            return fi
    return None


def _queue_head(w, waiting_nodes):
    """The head of the waiter list w is queued in: the one node of the circular list that is
    not a waiting fiber's wait record."""
    node = w["node"]
    start = int(node.address)
    n = node["next"]
    for _ in range(LIST_LIMIT):
        a = int(n)
        if a == start or a == 0:
            return None
        if a not in waiting_nodes:
            return a
        n = n["next"]
    return None


def _called(fi):
    """The child a fiber runs as a call (a join of a child that had not started), or 0."""
    return int(fi.f["called"]) if _has_field(fi.f.type.target(), "called") else 0


def _wait_desc(fi, now, waiting_nodes, fibers):
    parts = []
    f = fi.f
    deadline = int(f["deadline"])
    w = fi.wait
    if _called(fi):
        parts.append("joins 0x%x, which runs as its call" % _called(fi))
    if w is not None:
        parts.append("w=0x%x" % int(w))
        wt = w.dereference()
        until = int(wt["until"]) if _has_field(wt.type, "until") else 0
        if until:
            what = "deadline" if int(wt["timeout_result"]) else "wakes"
            parts.append("%s in %s" % (what, _dur(until - now)))
        elif deadline:
            parts.append("deadline in %s" % _dur(deadline - now))
        if bool(wt["hard"]):
            parts.append("uninterruptible")
        node = wt["node"]
        if int(node["next"]) != int(node.address):
            head = _queue_head(wt, waiting_nodes)
            if head is not None:
                sym = _symbol_at(head)
                owner = _stack_owner(head, fibers) if not sym else None
                if sym:
                    sym = " (%s)" % sym
                elif owner is not None:
                    sym = " (on the stack of '%s')" % owner.name
                parts.append("queued on 0x%x%s" % (head, sym))
    elif deadline and fi.state != "done":
        parts.append("deadline in %s" % _dur(deadline - now))
    if bool(f["cancelled"]):
        parts.append("cancelled")
    return parts


def _since(fi, now):
    if fi.wait is None:
        return ""
    wt = fi.wait.dereference()
    if not _has_field(wt.type, "since") or not int(wt["since"]):
        return ""
    return _dur(now - int(wt["since"]))


class TpcCommand(gdb.Command):
    """libtpc: fibers and shards. tpc fibers [-n], tpc bt [FIBER [BT-ARGS]], tpc shards."""

    def __init__(self):
        super().__init__("tpc", gdb.COMMAND_STACK, gdb.COMPLETE_COMMAND, True)

    def invoke(self, arg, from_tty):
        gdb.execute("help tpc", from_tty)


class TpcFibers(gdb.Command):
    """Lists every fiber of every shard of every libtpc runtime in the process.
Usage: tpc fibers [-n]
Columns: shard, fiber (the tpc_fiber *), state (ready, running, waiting, done), name, how long
ago it parked, and what it waits on: its wait record, when its timer wakes it or its deadline
passes, the waiter list it is queued on (named when it is in a global, or said to be on a
fiber's stack), and where it suspended: the outermost libtpc call and the function that made
it. -n leaves out where (no unwinding: faster with very many fibers)."""

    def __init__(self):
        super().__init__("tpc fibers", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        quick = arg.strip() == "-n"
        if arg.strip() and not quick:
            raise gdb.GdbError("usage: tpc fibers [-n]")
        rts = _runtimes()
        if not rts:
            gdb.write("libtpc: no runtime in this process (none started, or not stopped yet)\n")
            return
        now, clock = _clock(rts)
        fibers = list(_fibers(rts))
        waiting_nodes = set()
        off = _field_offset(_type("struct tpc__wait"), "node")
        for fi in fibers:
            if fi.wait is not None:
                waiting_nodes.add(int(fi.wait) + off)
        rows = []
        unwound = None  # why suspended fibers could not be unwound, once
        for fi in fibers:
            what = _wait_desc(fi, now, waiting_nodes, fibers)
            if fi.state == "ready" and _not_started(fi):
                what.append("not started: %s" % fi.f["fn"].format_string(symbols=True))
            elif not quick and not (unwound and fi.suspended()) and not _called(fi):
                try:
                    where = _where(fi)
                except gdb.GdbError as e:
                    where = ""
                    if fi.suspended():
                        unwound = str(e)
                if where:
                    what.append(where)
            rows.append((fi, _since(fi, now), "; ".join(what)))
        gdb.write("(times relative to %s)\n" % clock)
        if unwound:
            gdb.write("(where suspended fibers wait is left out: %s)\n" % unwound)
        wname = max([4] + [len(fi.name) for fi, _, _ in rows])
        for rt in rts:
            gdb.write("runtime 0x%x: %d shards%s\n" % (int(rt), int(rt["nshards"]),
                      ", stopping" if int(rt["stopping"]) or int(rt["stop"]) else ""))
            gdb.write("  %-5s %-18s %-8s %-*s %-10s %s\n"
                      % ("shard", "fiber", "state", wname, "name", "parked", "what"))
            for fi, since, what in rows:
                if int(fi.rt) != int(rt):
                    continue
                gdb.write("  %-5d 0x%-16x %-8s %-*s %-10s %s\n"
                          % (fi.sid, fi.addr, fi.state, wname, fi.name, since, what))


class TpcBt(gdb.Command):
    """Prints the backtrace of a libtpc fiber, suspended or running.
Usage: tpc bt [FIBER [BT-ARGS]]
FIBER is the fiber's address (or an expression giving a tpc_fiber *) or its name, as `tpc
fibers` shows them; BT-ARGS go to `bt` (full, -3, -frame-arguments all ...). Without FIBER,
every fiber's backtrace. A suspended fiber's saved registers are loaded into the selected
thread for the length of `bt`, then the thread's own are put back: the process must be live
and stopped."""

    def __init__(self):
        super().__init__("tpc bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        argv = gdb.string_to_argv(arg)
        if not argv:
            for fi in list(_fibers()):
                self._bt(fi, "")
            return
        self._bt(_find_fiber(argv[0]), " ".join(argv[1:]))

    @staticmethod
    def _bt(fi, args):
        gdb.write("fiber 0x%x '%s' (shard %d, %s):\n" % (fi.addr, fi.name, fi.sid, fi.state))
        if fi.state == "running" and _thread_of(fi.shard) is None:
            gdb.write("  (its shard's thread is not found)\n")
            return
        if fi.state != "running" and not fi.suspended():
            gdb.write("  (returned: no stack)\n")
            return
        if _called(fi):  # its saved context is old: its frames lie under the child's
            gdb.write("  (joins fiber 0x%x, which runs as its call: that fiber's backtrace ends "
                      "in this one's frames)\n" % _called(fi))
            return
        if _not_started(fi):
            gdb.write("  (not started: it will run %s)\n" % fi.f["fn"].format_string(symbols=True))
        with _on_fiber(fi):
            gdb.execute(("bt " + args).strip())


# ---- tpc shards. ----


def _ring_counts(s):
    """Per other shard j: messages in the ring from j, unpublished and pending to j."""
    rt = s["rt"]
    n = int(rt["nshards"])
    out = []
    for j in range(n):
        rin = s["in"][j] if int(s["in"]) else None
        rout = s["out"][j] if int(s["out"]) else None
        if (rin is None or not int(rin)) and (rout is None or not int(rout)):
            continue
        d = {}
        if rin is not None and int(rin):
            r = rin.dereference()
            d["queued"] = (int(r["tail"]) - int(r["head"])) & 0xFFFFFFFF
        if rout is not None and int(rout):
            r = rout.dereference()
            d["unpublished"] = (int(r["ptail"]) - int(r["pub"])) & 0xFFFFFFFF
            d["pending"] = sum(1 for _ in _walk(r["pending"]))
            d["want_space"] = int(r["want_space"])
        out.append((j, d))
    return out


def _layer_names():
    names = {}
    try:
        table = gdb.parse_and_eval("tpc__layers")
        lo, hi = table.type.strip_typedefs().range()
        for i in range(lo, hi + 1):
            if int(table[i]):
                names[i] = table[i]["name"].string()
    except (gdb.error, gdb.MemoryError, RuntimeError):
        pass
    return names


class TpcShards(gdb.Command):
    """Shows each shard of every libtpc runtime: what it does, its fibers, its run queue, its
io_uring, its rings to the other shards, its timers and its counters (tpc_shard_stats).
Usage: tpc shards"""

    def __init__(self):
        super().__init__("tpc shards", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        rts = _runtimes()
        if not rts:
            gdb.write("libtpc: no runtime in this process (none started, or not stopped yet)\n")
            return
        layers = _layer_names()
        for rt in rts:
            gdb.write("runtime 0x%x: %d shards, stop requested %d, stopping %d\n"
                      % (int(rt), int(rt["nshards"]), int(rt["stopping"]), int(rt["stop"])))
            for i in range(int(rt["nshards"])):
                s = rt["shards"][i]
                if not int(s):
                    gdb.write("shard %d: not set up\n" % i)
                    continue
                try:
                    self._shard(i, s, layers)
                except (gdb.error, gdb.MemoryError) as e:
                    gdb.write("  (cannot read shard %d: %s)\n" % (i, e))

    @staticmethod
    def _shard(i, s, layers):
        t = _thread_of(s)
        cur = s["current"]
        if int(s["left"]):
            doing = "has left its loop"
        elif int(cur):
            doing = "running fiber 0x%x '%s'" % (int(cur), _cstr(cur["name"]))
        elif int(s["sleeping"]):
            doing = "asleep"
        else:
            doing = "in its loop"
        gdb.write("shard %d (0x%x): cpu %d, %s, %s\n"
                  % (i, int(s), int(s["cpu"]),
                     "thread %d (LWP %d)" % (t.num, t.ptid[1]) if t else "LWP %d" % int(s["tid"]),
                     doing))
        counts = dict.fromkeys(STATES, 0)
        nf = 0
        for node in _walk(s["fibers"]):
            f = _container(node, "struct tpc_fiber", "all")
            st = "running" if int(f) == int(cur) else STATES[min(int(f["state"]), 3)]
            counts[st] += 1
            nf += 1
        gdb.write("  fibers: %d (%s), %d not returned; %d records and %d stacks pooled\n"
                  % (nf, ", ".join("%d %s" % (counts[k], k) for k in STATES),
                     int(s["nlive"]), int(s["nfree_fibers"]),
                     sum(int(s["stk"][i]["nhot"]) for i in range(_stack_classes(s)))))
        fibers = callbacks = 0
        q = s["runq"]["head"]
        task_ptr = _type("struct tpc__task").pointer()
        for _ in range(LIST_LIMIT):
            if not int(q):
                break
            if int(q.cast(task_ptr)["kind"]) == TASK_FIBER:
                fibers += 1
            else:
                callbacks += 1
            q = q["next"]
        gdb.write("  run queue: %d (%d fibers, %d callbacks)\n"
                  % (fibers + callbacks, fibers, callbacks))
        io = "  io_uring: %d in flight, %d multishot" % (int(s["inflight"]), int(s["nmultishot"]))
        if bool(s["ring_ok"]):
            ring = s["ring"]
            try:
                sq, cq = ring["sq"], ring["cq"]
                io += ", %d SQEs not submitted, %d CQEs not reaped" % (
                    (int(sq["sqe_tail"]) - int(sq["sqe_head"])) & 0xFFFFFFFF,
                    (int(cq["ktail"].dereference()) - int(cq["khead"].dereference()))
                    & 0xFFFFFFFF)
            except (gdb.error, gdb.MemoryError):
                pass
            io += ", setup flags 0x%x" % int(s["ring_flags"])
        else:
            io += " (no ring)"
        gdb.write(io + "\n")
        for li, name in layers.items():
            if name == "timer" and int(s["layer"][li]):
                try:
                    timers = s["layer"][li].cast(_type("struct tpc__timers").pointer())
                    gdb.write("  timers: %d pending\n" % int(timers["wheel"]["count"]))
                except gdb.GdbError:
                    pass
        rings = []
        for j, d in _ring_counts(s):
            r = "%d:" % j
            if "queued" in d:
                r += " %d in" % d["queued"]
            if "unpublished" in d:
                r += ", %d unpublished out, %d pending out%s" % (
                    d["unpublished"], d["pending"], ", wants space" if d["want_space"] else "")
            rings.append(r)
        bells = [int(s["bell"][k]) for k in range(int(s["nbell"]))] if int(s["bell"]) else []
        gdb.write("  rings: %s; doorbells %s; inbox %s\n"
                  % ("; ".join(rings) or "none",
                     " ".join("0x%x" % b for b in bells) or "-",
                     "has messages" if int(s["inbox"]) else "empty"))
        stats = ["%s %d" % (f.name[2:], int(s[f.name]))
                 for f in s.dereference().type.strip_typedefs().fields()
                 if f.name and f.name.startswith("n_")]
        gdb.write("  counters: %s\n" % ", ".join(stats))


gdb.events.new_objfile.connect(lambda event: _lib_root.clear())  # another program, maybe
TpcCommand()
TpcFibers()
TpcBt()
TpcShards()
