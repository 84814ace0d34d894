//! What both Tokio peers (bench-tokio-core, bench-tokio-xshard) need: pinning and the output
//! line of bench/bench.h.

/// Pins the calling thread to `cpu`; returns false (after a warning on stderr) if it cannot.
pub fn pin_to(cpu: usize) -> bool {
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
            return false;
        }
    }
    true
}

/// `bench <id> <value> <unit> | <conditions>`, as bench/bench.h prints it.
pub fn report(id: &str, value: f64, unit: &str, cond: &str) {
    println!("bench {} {:.2} {} | {}", id, value, unit, cond);
}
