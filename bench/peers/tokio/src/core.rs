//! Tokio peer of libtpc's bench/bench-core.c: the executor's own costs on one thread.
//!
//! One tokio current_thread runtime (the closest equivalent of a single libtpc shard) on a thread
//! pinned to CPU 0 (the runner also pins the process with taskset):
//!
//!   yield          = libtpc yield: two tasks each calling `tokio::task::yield_now().await` in a
//!                    loop; wall time per yield (one task-to-task hand-off).
//!   spawn_join     = libtpc spawn_join: `tokio::spawn` of a task returning a number, then
//!                    awaiting its JoinHandle; time per pair (tokio allocates each task).
//!   chan_pingpong  = libtpc chan_pingpong: two tasks bouncing a value over two bounded
//!                    `mpsc::channel(1)`s; time per message (two per round trip).
//!
//! The ids are libtpc's, so the runner (scripts/bench.sh) pairs the lines directly.
//! Output lines: `bench <id> <value> <unit> | <conditions>`, as bench/bench.h prints them.
//! Usage: bench-tokio-core [iterations]   (default 5,000,000, as bench-core)

use std::time::Instant;
use tokio::sync::mpsc;

/// Pins the calling thread to `cpu`; returns false (after a warning) if it cannot.
fn pin_to(cpu: usize) -> bool {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "warning: cannot pin to cpu {}: {}",
                cpu,
                std::io::Error::last_os_error()
            );
            return false;
        }
    }
    true
}

fn report(id: &str, value: f64, unit: &str, cond: &str) {
    println!("bench {} {:.2} {} | {}", id, value, unit, cond);
}

async fn yielder(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

async fn bench(n: u64, cond: &str) {
    // Two rounds of each, as bench-core does: the first warms allocator and caches.
    for round in 0..2 {
        let t0 = Instant::now();
        let a = tokio::spawn(yielder(n));
        let b = tokio::spawn(yielder(n));
        a.await.expect("yielder");
        b.await.expect("yielder");
        let ns = t0.elapsed().as_nanos() as f64;
        if round == 1 {
            report(
                "yield",
                ns / (2.0 * n as f64),
                "ns/op",
                &format!("2 tasks x {} yield_now, {}", n, cond),
            );
        }
    }

    for round in 0..2 {
        let t0 = Instant::now();
        let mut sum = 0u64;
        for i in 0..n {
            sum += tokio::spawn(async move { i & 1 }).await.expect("task");
        }
        let ns = t0.elapsed().as_nanos() as f64;
        if round == 1 {
            report(
                "spawn_join",
                ns / n as f64,
                "ns/op",
                &format!(
                    "{} tokio::spawn + JoinHandle await (sum {}), {}",
                    n, sum, cond
                ),
            );
        }
    }

    for round in 0..2 {
        let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
        let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
        let ponger = tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                if pong_tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        let t0 = Instant::now();
        for i in 0..n {
            ping_tx.send(i).await.expect("ponger gone");
            pong_rx.recv().await.expect("ponger gone");
        }
        let ns = t0.elapsed().as_nanos() as f64;
        drop(ping_tx);
        ponger.await.expect("ponger");
        if round == 1 {
            report(
                "chan_pingpong",
                ns / (2.0 * n as f64),
                "ns/op",
                &format!(
                    "{} round trips over two mpsc::channel(1), 2 tasks, {}",
                    n, cond
                ),
            );
        }
    }
}

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        None => 5_000_000,
        Some(s) => match s.parse() {
            Ok(v) if v > 0 => v,
            _ => {
                eprintln!("usage: bench-tokio-core [iterations]   (> 0, default 5000000)");
                std::process::exit(2);
            }
        },
    };
    let pinned = pin_to(0);
    let cond = format!(
        "tokio {} current_thread, {}",
        env!("TOKIO_VERSION"),
        if pinned {
            "cpu 0"
        } else {
            "UNPINNED (cpu 0 wanted)"
        }
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
        .block_on(bench(n, &cond));
}
