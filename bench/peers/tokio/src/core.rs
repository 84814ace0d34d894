//! Tokio peer of libtpc's bench/bench-core.c and bench/bench-idle.c: the executor's own costs on
//! one thread.
//!
//! One tokio current_thread runtime (the closest equivalent of a single libtpc shard) on a thread
//! pinned to CPU 0 (the runner also pins the process with taskset), in two variants, one after
//! the other, each with a runtime of its own:
//!
//!   drivers: io+time   `enable_all()`: the I/O driver (epoll through mio) and the timer wheel
//!   drivers: none      no driver: the runtime parks on a condition variable (futex) and polls
//!                      no event source
//!
//!   yield          = libtpc yield: two tasks each calling `tokio::task::yield_now().await` in a
//!                    loop; wall time per yield (one task-to-task hand-off). yield_now defers
//!                    its wake-up (see idle_loop), so every pass over the two tasks also goes
//!                    through the driver once.
//!   spawn_join     = libtpc spawn_join: `tokio::spawn` of a task returning a number, then
//!                    awaiting its JoinHandle; time per pair (tokio allocates each task).
//!   chan_pingpong  = libtpc chan_pingpong: two tasks bouncing a value over two bounded
//!                    `mpsc::channel(1)`s; time per message (two per round trip).
//!   idle_loop      = libtpc idle_loop (bench-idle: a fiber's tpc_sleep(0) parks it until the
//!                    next loop iteration): one task, alone on the runtime, calling yield_now in
//!                    a loop; time per call. In tokio 1.24 yield_now does not requeue the task:
//!                    it pushes the task's waker on the thread's `Defer` list (task/yield_now.rs,
//!                    runtime/defer.rs). Each call is then one iteration of the current_thread
//!                    scheduler loop that finds nothing else to do (runtime/scheduler/
//!                    current_thread.rs, CoreGuard::block_on): the local run queue is empty and
//!                    so is the injection queue (the other threads' inbox, a mutex), so, as
//!                    tasks were deferred, it calls park_yield: the driver's park_timeout(0)
//!                    (io+time: the timer wheel under its mutex and epoll_wait with timeout 0;
//!                    none: one compare-exchange on the park state) and then wakes the deferred
//!                    wakers, which puts the task back on the local queue; the loop polls the
//!                    block_on future only if it was woken (it was not), pops the task and polls
//!                    it. The second of two rounds, as bench-idle reports it.
//!
//! The ids are libtpc's, so the runner (scripts/bench.sh) pairs the lines directly. The
//! conditions start with the variant in a fixed form, `tokio <version> current_thread, drivers:
//! <io+time|none>, ...`, which the runner uses to tell the variants apart and keep the better.
//! Output lines: `bench <id> <value> <unit> | <conditions>`, as bench/bench.h prints them.
//! Usage: bench-tokio-core [iterations [core|idle]]   (default 5,000,000, as bench-core; `core`:
//! yield, spawn_join and chan_pingpong only; `idle`: idle_loop only; default both). The
//! io+time variant runs a tenth of the iterations (at least 1,000): it is about 10x slower each.

mod common;

use common::{pin_to, report};
use std::time::Instant;
use tokio::sync::mpsc;

async fn yielder(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

async fn core(n: u64, cond: &str) {
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
                &format!("{}, 2 tasks x {} yield_now", cond, n),
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
                    "{}, {} tokio::spawn + JoinHandle await (sum {})",
                    cond, n, sum
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
                    "{}, {} round trips over two mpsc::channel(1), 2 tasks",
                    cond, n
                ),
            );
        }
    }
}

async fn idle(n: u64, cond: &str) {
    for round in 0..2 {
        // The task times itself, so that spawning and joining it stay out of the figure.
        let ns = tokio::spawn(async move {
            let t0 = Instant::now();
            yielder(n).await;
            t0.elapsed().as_nanos() as f64
        })
        .await
        .expect("idler");
        if round == 1 {
            report(
                "idle_loop",
                ns / n as f64,
                "ns/iteration",
                &format!(
                    "{}, 1 task alone on the runtime x {} yield_now (one scheduler loop \
                     iteration each: empty queues, driver polled with timeout 0)",
                    cond, n
                ),
            );
        }
    }
}

fn main() {
    let usage = || -> ! {
        eprintln!(
            "usage: bench-tokio-core [iterations [core|idle]]   (iterations > 0, default 5000000)"
        );
        std::process::exit(2);
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 2 {
        usage();
    }
    let n: u64 = match args.first() {
        None => 5_000_000,
        Some(s) => match s.parse() {
            Ok(v) if v > 0 => v,
            _ => usage(),
        },
    };
    let (want_core, want_idle) = match args.get(1).map(String::as_str) {
        None => (true, true),
        Some("core") => (true, false),
        Some("idle") => (false, true),
        Some(_) => usage(),
    };
    let pinned = pin_to(0);
    for drivers in [true, false] {
        let cond = format!(
            "tokio {} current_thread, drivers: {}, {}",
            env!("TOKIO_VERSION"),
            if drivers { "io+time" } else { "none" },
            if pinned {
                "cpu 0"
            } else {
                "UNPINNED (cpu 0 wanted)"
            }
        );
        let mut b = tokio::runtime::Builder::new_current_thread();
        if drivers {
            b.enable_all();
        }
        let rt = b.build().expect("tokio runtime");
        // With the drivers every wake of the block_on future goes through the I/O driver (an
        // eventfd write), about 10x slower per operation: a tenth of the iterations gives the
        // same per-operation figure in the same time.
        let iters = if drivers { (n / 10).max(1000) } else { n };
        if want_core {
            rt.block_on(core(iters, &cond));
        }
        if want_idle {
            rt.block_on(idle(iters, &cond));
        }
    }
}
