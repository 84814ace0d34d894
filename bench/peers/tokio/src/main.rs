//! Tokio peer of libtpc's bench/bench-xshard.c: cross-thread messaging between two
//! thread-per-core style runtimes.
//!
//! Two OS threads, each running its own tokio current_thread runtime (the closest tokio
//! equivalent of a libtpc shard); thread A is pinned to CPU 0, thread B to CPU 1.
//!
//!   tokio_xshard_stream    = libtpc xshard_stream: fire-and-forget messages A -> B. A sends N
//!                            u64 over a bounded mpsc(512) with `send().await`; B takes them with
//!                            `recv().await`. Time from A's first send to B receiving the last
//!                            (B timestamps it and hands the Instant back over a oneshot).
//!   tokio_xshard_rtt       = libtpc xshard_rtt: a call A -> B and back while B is busy (a second
//!                            task on B loops on yield_now, so B's runtime never parks). Request
//!                            over mpsc(512) A -> B, reply over mpsc(512) B -> A (cheaper than a
//!                            oneshot per call). Median and p99 of 100,000 calls after 10,000
//!                            warm-up calls.
//!   tokio_xshard_wakeup    = libtpc wakeup: the same call with B idle, so B's runtime is parked
//!                            (futex: no `net` feature, so no epoll driver) when the request
//!                            arrives; A busy-waits 20 us between calls. 10,000 calls.
//!
//! Output lines: `bench <id> <value> <unit> | <conditions>`, as bench/bench.h prints them.
//! Usage: bench-tokio-xshard [messages]   (stream messages, default 10,000,000)

use std::sync::atomic::{AtomicBool, Ordering};
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

/// Pins the calling thread to `cpu`; on failure warns on stderr and carries on.
fn pin_to(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "warning: cannot pin thread to cpu {}: {}",
                cpu,
                std::io::Error::last_os_error()
            );
            PINNED.store(false, Ordering::Relaxed);
        }
    }
}

/// One runtime per thread, as asked: current_thread with all the drivers compiled in.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn report(id: &str, value: f64, unit: &str, cond: &str) {
    println!("bench {} {:.2} {} | {}", id, value, unit, cond);
}

fn base_cond() -> String {
    let cpus = if PINNED.load(Ordering::Relaxed) {
        "cpus 0,1"
    } else {
        "UNPINNED (cpus 0,1 wanted)"
    };
    format!(
        "tokio {} current_thread x2, {}",
        env!("TOKIO_VERSION"),
        cpus
    )
}

/// Thread B: receives the stream, then serves calls until A closes the request channel.
async fn b_main(
    n: u64,
    mut data: mpsc::Receiver<u64>,
    done: oneshot::Sender<Instant>,
    mut requests: mpsc::Receiver<u64>,
    replies: mpsc::Sender<u64>,
    stop_spinner: Arc<AtomicBool>,
) {
    // Stream: the idiomatic loop, one `recv().await` per message.
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(v) = data.recv().await {
        sum = sum.wrapping_add(v);
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

    // Busy phase: a task that keeps B's runtime from ever parking, until A says stop.
    let spinner = tokio::spawn(async move {
        while !stop_spinner.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
    });
    done.send(last).expect("A gone");

    // Server: echo each request (rtt and wakeup phases alike).
    while let Some(x) = requests.recv().await {
        replies.send(x).await.expect("A gone");
    }
    spinner.await.expect("spinner panicked");
}

/// Runs `warmup + calls` round trips A -> B -> A and reports median and p99 of the last `calls`.
async fn round_trips(
    id: &str,
    what: &str,
    warmup: usize,
    calls: usize,
    gap: Duration,
    requests: &mpsc::Sender<u64>,
    replies: &mut mpsc::Receiver<u64>,
) {
    let mut lat = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let t0 = Instant::now();
        requests.send(i as u64).await.expect("B gone");
        let r = replies.recv().await.expect("B gone");
        let dt = t0.elapsed();
        assert_eq!(r, i as u64);
        if i >= warmup {
            lat.push(dt.as_nanos() as u64);
        }
        // Busy-wait (not sleep: A must stay awake) so that B falls asleep before the next call.
        let t1 = Instant::now();
        while t1.elapsed() < gap {}
    }
    lat.sort_unstable();
    let cond = format!(
        "{}, request mpsc({}) A->B + reply mpsc({}) B->A, {}, {} round trips after {} warm-up",
        base_cond(),
        CAPACITY,
        CAPACITY,
        what,
        calls,
        warmup
    );
    report(&format!("{}_p50", id), lat[calls / 2] as f64, "ns", &cond);
    report(
        &format!("{}_p99", id),
        lat[calls * 99 / 100] as f64,
        "ns",
        &cond,
    );
}

/// Thread A: drives every phase and takes every measurement.
async fn a_main(
    n: u64,
    data: mpsc::Sender<u64>,
    done: oneshot::Receiver<Instant>,
    requests: mpsc::Sender<u64>,
    mut replies: mpsc::Receiver<u64>,
    stop_spinner: Arc<AtomicBool>,
) {
    // a) stream
    let t0 = Instant::now();
    for i in 0..n {
        data.send(i).await.expect("B gone");
    }
    let last = done.await.expect("B gone");
    let ns = last.duration_since(t0).as_nanos() as f64;
    let cond = format!(
        "{}, mpsc bounded {}, send().await -> recv().await, {} msgs",
        base_cond(),
        CAPACITY,
        n
    );
    report("tokio_xshard_stream", n as f64 * 1e9 / ns, "msg/s", &cond);
    report("tokio_xshard_stream_ns", ns / n as f64, "ns/msg", &cond);

    // b) round trips to a busy B (its spinner task is already running)
    let busy = "B busy (a task there loops on yield_now)";
    round_trips(
        "tokio_xshard_rtt",
        busy,
        RTT_WARMUP,
        RTT_CALLS,
        Duration::ZERO,
        &requests,
        &mut replies,
    )
    .await;

    // c) round trips to an idle B: stop the spinner, give B time to park, then call 20 us apart
    stop_spinner.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let idle = "B idle (runtime parks between calls), A spins 20 us between calls";
    round_trips(
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

    let (data_tx, data_rx) = mpsc::channel::<u64>(CAPACITY);
    let (done_tx, done_rx) = oneshot::channel::<Instant>();
    let (req_tx, req_rx) = mpsc::channel::<u64>(CAPACITY);
    let (rep_tx, rep_rx) = mpsc::channel::<u64>(CAPACITY);
    let stop_a = Arc::new(AtomicBool::new(false));
    let stop_b = stop_a.clone();

    // B first, so that it is pinned and waiting before A sends anything.
    let b = std::thread::Builder::new()
        .name("tokio-b".into())
        .spawn(move || {
            pin_to(1);
            runtime().block_on(b_main(n, data_rx, done_tx, req_rx, rep_tx, stop_b));
        })
        .expect("spawn B");
    let a = std::thread::Builder::new()
        .name("tokio-a".into())
        .spawn(move || {
            pin_to(0);
            runtime().block_on(a_main(n, data_tx, done_rx, req_tx, rep_rx, stop_a));
        })
        .expect("spawn A");
    a.join().expect("thread A panicked");
    b.join().expect("thread B panicked");
}
