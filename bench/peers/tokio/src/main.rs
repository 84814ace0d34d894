//! Tokio peer of libtpc's bench/bench-xshard.c: messaging between two sides, A and B, that in
//! libtpc are two shards on CPUs 0 and 1.
//!
//! Every workload runs in four variants, one after the other, each with runtimes of its own:
//!
//!   current_thread x2, drivers: io+time   two OS threads, each running its own current_thread
//!   current_thread x2, drivers: none      runtime (the closest tokio equivalent of a libtpc
//!                                         shard); thread A pinned to CPU 0, thread B to CPU 1.
//!   multi_thread 2 workers, drivers: io+time   one multi_thread runtime with 2 worker threads,
//!   multi_thread 2 workers, drivers: none      pinned to CPUs 0 and 1; A and B are tasks
//!                                         spawned on it, and tokio runs each on either worker
//!                                         (work stealing, and a task woken by a worker goes to
//!                                         that worker's LIFO slot): they may share one worker.
//!
//! Every line says how often A and B really were on different threads (`on different threads:
//! P% of msgs|calls`; always 100% with current_thread x2). With multi_thread, the stream mostly
//! crosses (80-98% in short runs), but the round trips run both tasks on one worker (0%): each
//! side wakes the other into its own worker's LIFO slot and then waits, so the call never leaves
//! the thread and no worker is woken. Such a figure is not the cross-thread workload, so the
//! runner counts a Tokio line for these ids only when P >= 50 (scripts/bench-report.py).
//!
//! `drivers: io+time` is `enable_all()`: the I/O driver (epoll through mio) and the timer wheel;
//! a runtime parks in epoll_wait. `drivers: none` builds the runtime without drivers: it parks
//! on a condition variable (futex) and polls no event source. Which one is faster depends on the
//! workload, so the runner reports the better of the variants (scripts/bench-report.py).
//!
//!   tokio_xshard_stream    = libtpc xshard_stream: fire-and-forget messages A -> B. A sends N
//!                            u64 over a bounded mpsc(512) with `send().await`; B takes them with
//!                            `recv().await`. Time from A's first send to B receiving the last
//!                            (B timestamps it and hands the Instant back over a oneshot).
//!   tokio_xshard_rtt       = libtpc xshard_rtt: a call A -> B and back while B is busy (a second
//!                            task on B's side loops on yield_now, so B's runtime, or one of the
//!                            two workers, never parks). Request over mpsc(512) A -> B, reply
//!                            over mpsc(512) B -> A (cheaper than a oneshot per call). Median and
//!                            p99 of 100,000 calls after 10,000 warm-up calls.
//!   tokio_xshard_wakeup    = libtpc wakeup: the same call with B idle, so B's runtime (or the
//!                            worker B's task last ran on) is parked when the request arrives;
//!                            A busy-waits 20 us between calls. 10,000 calls.
//!
//! Output lines: `bench <id> <value> <unit> | <conditions>`, as bench/bench.h prints them. The
//! conditions start with the variant in a fixed form, `tokio <version> <flavour>, drivers:
//! <io+time|none>, ...`, which the runner uses to tell the variants apart.
//! Usage: bench-tokio-xshard [messages]   (stream messages, default 10,000,000)

mod common;

use common::{pin_to, report};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const CAPACITY: usize = 512;
const RTT_CALLS: usize = 100_000;
const RTT_WARMUP: usize = 10_000;
const WAKEUP_CALLS: usize = 10_000;
const WAKEUP_WARMUP: usize = 1_000;
const WAKEUP_GAP: Duration = Duration::from_micros(20);

/// False once a thread could not be pinned (the condition text then says so).
static PINNED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// 0 or 1: the thread (A/B) or worker this thread is. Messages carry it in their low bit so
    /// that the conditions can say how often A and B really ran on different threads.
    static WORKER: Cell<u64> = Cell::new(0);
}

fn worker() -> u64 {
    WORKER.with(|w| w.get())
}

/// Pins the calling thread to `cpu` and records it as worker `cpu`; on failure warns on stderr
/// and carries on.
fn pin_worker(cpu: usize) {
    WORKER.with(|w| w.set(cpu as u64));
    if !pin_to(cpu) {
        PINNED.store(false, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy)]
struct Variant {
    multi_thread: bool,
    drivers: bool,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        multi_thread: false,
        drivers: true,
    },
    Variant {
        multi_thread: false,
        drivers: false,
    },
    Variant {
        multi_thread: true,
        drivers: true,
    },
    Variant {
        multi_thread: true,
        drivers: false,
    },
];

impl Variant {
    /// The runtime of one side (current_thread) or of both (multi_thread).
    fn runtime(&self) -> tokio::runtime::Runtime {
        let mut b = if self.multi_thread {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            // The two workers are pinned to CPUs 0 and 1, as libtpc's two shards and the
            // current_thread threads are: the same CPUs, and no migrations for anyone. Tokio
            // starts the workers as its first two blocking-pool threads (and this benchmark
            // starts no other), so the first thread gets CPU 0 and the second CPU 1.
            let started = Arc::new(AtomicUsize::new(0));
            b.worker_threads(2).on_thread_start(move || {
                let i = started.fetch_add(1, Ordering::Relaxed);
                if i < 2 {
                    pin_worker(i);
                }
            });
            b
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        if self.drivers {
            b.enable_all();
        }
        b.build().expect("tokio runtime")
    }

    /// The variant as the conditions start: `tokio <version> <flavour>, drivers: <...>, <cpus>`.
    fn cond(&self) -> String {
        let pinned = PINNED.load(Ordering::Relaxed);
        format!(
            "tokio {} {}, drivers: {}, {}",
            env!("TOKIO_VERSION"),
            if self.multi_thread {
                "multi_thread 2 workers"
            } else {
                "current_thread x2"
            },
            if self.drivers { "io+time" } else { "none" },
            match (self.multi_thread, pinned) {
                (false, true) => "A on cpu 0, B on cpu 1",
                (false, false) => "UNPINNED (cpus 0,1 wanted)",
                (true, true) => "workers on cpus 0 and 1, A and B tasks on either",
                (true, false) => "workers UNPINNED (cpus 0,1 wanted), A and B tasks on either",
            }
        )
    }
}

fn percent(part: u64, all: u64) -> f64 {
    100.0 * part as f64 / all.max(1) as f64
}

/// B: receives the stream, then serves calls until A closes the request channel.
async fn b_main(
    n: u64,
    mut data: mpsc::Receiver<u64>,
    done: oneshot::Sender<(Instant, u64)>,
    mut requests: mpsc::Receiver<u64>,
    replies: mpsc::Sender<u64>,
    stop_spinner: Arc<AtomicBool>,
) {
    // Stream: the idiomatic loop, one `recv().await` per message. A message is i << 1 | the
    // sender's worker.
    let (mut count, mut sum, mut cross) = (0u64, 0u64, 0u64);
    while let Some(v) = data.recv().await {
        sum = sum.wrapping_add(v >> 1);
        cross += (v & 1 != worker()) as u64;
        count += 1;
        if count == n {
            break;
        }
    }
    let last = Instant::now();
    assert_eq!(
        sum,
        n.wrapping_mul(n.wrapping_sub(1)) / 2,
        "stream lost or reordered messages"
    );

    // Busy phase: a task that keeps B's runtime (or a worker) from ever parking, until A says
    // stop.
    let spinner = tokio::spawn(async move {
        while !stop_spinner.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
    });
    done.send((last, cross)).expect("A gone");

    // Server: echo each request with B's worker in the low bit (rtt and wakeup phases alike).
    while let Some(x) = requests.recv().await {
        replies.send(x << 1 | worker()).await.expect("A gone");
    }
    spinner.await.expect("spinner panicked");
}

/// Runs `warmup + calls` round trips A -> B -> A and reports median and p99 of the last `calls`.
#[allow(clippy::too_many_arguments)]
async fn round_trips(
    v: Variant,
    id: &str,
    what: &str,
    warmup: usize,
    calls: usize,
    gap: Duration,
    requests: &mpsc::Sender<u64>,
    replies: &mut mpsc::Receiver<u64>,
) {
    let mut lat = Vec::with_capacity(calls);
    let mut cross = 0u64;
    for i in 0..warmup + calls {
        let t0 = Instant::now();
        requests.send(i as u64).await.expect("B gone");
        let r = replies.recv().await.expect("B gone");
        let dt = t0.elapsed();
        assert_eq!(r >> 1, i as u64);
        if i >= warmup {
            lat.push(dt.as_nanos() as u64);
            cross += (r & 1 != worker()) as u64;
        }
        // Busy-wait (not sleep: A must stay awake) so that B falls asleep before the next call.
        let t1 = Instant::now();
        while t1.elapsed() < gap {}
    }
    lat.sort_unstable();
    let cond = format!(
        "{}, request mpsc({}) A->B + reply mpsc({}) B->A, {}, {} round trips after {} warm-up, \
         on different threads: {:.0}% of calls (B answered on another thread than A's)",
        v.cond(),
        CAPACITY,
        CAPACITY,
        what,
        calls,
        warmup,
        percent(cross, calls as u64)
    );
    report(&format!("{}_p50", id), lat[calls / 2] as f64, "ns", &cond);
    report(
        &format!("{}_p99", id),
        lat[calls * 99 / 100] as f64,
        "ns",
        &cond,
    );
}

/// A: drives every phase and takes every measurement.
async fn a_main(
    v: Variant,
    n: u64,
    data: mpsc::Sender<u64>,
    done: oneshot::Receiver<(Instant, u64)>,
    requests: mpsc::Sender<u64>,
    mut replies: mpsc::Receiver<u64>,
    stop_spinner: Arc<AtomicBool>,
) {
    // a) stream
    let t0 = Instant::now();
    for i in 0..n {
        data.send(i << 1 | worker()).await.expect("B gone");
    }
    let (last, cross) = done.await.expect("B gone");
    let ns = last.duration_since(t0).as_nanos() as f64;
    let cond = format!(
        "{}, mpsc bounded {}, send().await -> recv().await, {} msgs, \
         on different threads: {:.0}% of msgs (received on another thread than sent)",
        v.cond(),
        CAPACITY,
        n,
        percent(cross, n)
    );
    report("tokio_xshard_stream", n as f64 * 1e9 / ns, "msg/s", &cond);
    report("tokio_xshard_stream_ns", ns / n as f64, "ns/msg", &cond);

    // b) round trips to a busy B (its spinner task is already running)
    let busy = "B busy (a task there loops on yield_now)";
    round_trips(
        v,
        "tokio_xshard_rtt",
        busy,
        RTT_WARMUP,
        RTT_CALLS,
        Duration::ZERO,
        &requests,
        &mut replies,
    )
    .await;

    // c) round trips to an idle B: stop the spinner, give B time to park (a blocking sleep: a
    // runtime without drivers has no timers), then call 20 us apart
    stop_spinner.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(10));
    let idle = "B idle (its runtime or worker parks between calls), A spins 20 us between calls";
    round_trips(
        v,
        "tokio_xshard_wakeup",
        idle,
        WAKEUP_WARMUP,
        WAKEUP_CALLS,
        WAKEUP_GAP,
        &requests,
        &mut replies,
    )
    .await;
    // Dropping `requests` here ends B's server loop.
}

/// Runs every workload in variant `v`.
fn run(v: Variant, n: u64) {
    let (data_tx, data_rx) = mpsc::channel::<u64>(CAPACITY);
    let (done_tx, done_rx) = oneshot::channel::<(Instant, u64)>();
    let (req_tx, req_rx) = mpsc::channel::<u64>(CAPACITY);
    let (rep_tx, rep_rx) = mpsc::channel::<u64>(CAPACITY);
    let stop_a = Arc::new(AtomicBool::new(false));
    let stop_b = stop_a.clone();
    let a = a_main(v, n, data_tx, done_rx, req_tx, rep_rx, stop_a);
    let b = b_main(n, data_rx, done_tx, req_rx, rep_tx, stop_b);

    if v.multi_thread {
        // Both sides are tasks of one runtime; this thread only waits for them.
        let rt = v.runtime();
        rt.block_on(async move {
            let b = tokio::spawn(b);
            let a = tokio::spawn(a);
            a.await.expect("A panicked");
            b.await.expect("B panicked");
        });
        return;
    }
    // B first, so that it is pinned and waiting before A sends anything.
    let b = std::thread::Builder::new()
        .name("tokio-b".into())
        .spawn(move || {
            pin_worker(1);
            v.runtime().block_on(b);
        })
        .expect("spawn B");
    let a = std::thread::Builder::new()
        .name("tokio-a".into())
        .spawn(move || {
            pin_worker(0);
            v.runtime().block_on(a);
        })
        .expect("spawn A");
    a.join().expect("thread A panicked");
    b.join().expect("thread B panicked");
}

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        None => 10_000_000,
        Some(s) => match s.parse() {
            Ok(v) if v > 0 => v,
            _ => {
                eprintln!(
                    "usage: bench-tokio-xshard [messages]   (messages > 0, default 10000000)"
                );
                std::process::exit(2);
            }
        },
    };
    for v in VARIANTS {
        run(v, n);
    }
}
