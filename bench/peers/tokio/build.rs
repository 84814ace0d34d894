// Passes the tokio version that Cargo.lock resolved to main.rs (as TOKIO_VERSION), so the
// benchmark's condition text names the version actually built.
use std::fs;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut version = "unknown".to_string();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tokio\"" {
            if let Some(v) = lines.next() {
                version = v
                    .trim()
                    .trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string();
            }
            break;
        }
    }
    println!("cargo:rustc-env=TOKIO_VERSION={}", version);
}
