//! Tokio peer of libtpc's tpc-http and tpc-echo (examples/http.c, examples/echo.c) for
//! bench/net.sh.
//!
//!   tokio-server http|echo ADDR        ADDR: 127.0.0.1:8080, [::1]:8080 (port 0: any)
//!
//! One tokio current_thread runtime (the closest tokio equivalent of one libtpc shard) with the
//! I/O driver only, one task per connection, TCP_NODELAY on accepted sockets as tpc-http sets it.
//! http answers as examples/http.c does: the same parsing rules, keep-alive, the answers to all
//! complete requests of one read in one write_all (split only where tpc-http splits them, at
//! 16 KiB), "Connection: close" and HTTP/1.0 close after the answer, 400 then close for a
//! malformed request. echo writes back whatever it reads. SIGINT/SIGTERM end the process (no
//! signal feature: the default action).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUF_SIZE: usize = 16384;
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\n\r\nHello, World!";
const BAD: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

enum Parse {
    Complete(usize),
    Incomplete,
    Bad,
}

fn find(hay: &[u8], b: u8) -> Option<usize> {
    hay.iter().position(|&c| c == b)
}

/// A Content-Length value as examples/http.c reads it: digits only (RFC 9110: 1*DIGIT), at
/// least one, at most `max`; None otherwise.
fn content_length(s: &[u8], max: usize) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    let mut v: usize = 0;
    for &c in s {
        if !c.is_ascii_digit() || v > max {
            return None;
        }
        v = v * 10 + (c - b'0') as usize;
    }
    if v > max {
        None
    } else {
        Some(v)
    }
}

/// One request at the start of `p`, by the rules of examples/http.c's parse_request. Sets
/// `close` when the connection must close after it.
fn parse(p: &[u8], close: &mut bool) -> Parse {
    let head = match p.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => i + 4,
        None if p.len() >= BUF_SIZE => return Parse::Bad,
        None => return Parse::Incomplete,
    };
    // Request line: METHOD SP TARGET SP HTTP/1.x CRLF
    let line_end = find(&p[..head], b'\r').unwrap();
    let m_end = match find(&p[..line_end], b' ') {
        Some(0) | None => return Parse::Bad,
        Some(i) => i,
    };
    let t_end = match find(&p[m_end + 1..line_end], b' ') {
        Some(0) | None => return Parse::Bad,
        Some(i) => m_end + 1 + i,
    };
    if line_end - t_end != 9 || &p[t_end + 1..t_end + 8] != b"HTTP/1." {
        return Parse::Bad;
    }
    let minor = p[t_end + 8];
    if minor != b'0' && minor != b'1' {
        return Parse::Bad;
    }
    if !p[..m_end].iter().all(|c| c.is_ascii_uppercase()) {
        return Parse::Bad;
    }
    *close = minor == b'0';
    let mut body: usize = 0;
    let mut h = line_end + 2;
    while h < head - 2 {
        let h_end = h + find(&p[h..head], b'\r').unwrap();
        let colon = match find(&p[h..h_end], b':') {
            Some(0) | None => return Parse::Bad,
            Some(i) => h + i,
        };
        let name = &p[h..colon];
        let mut v = colon + 1;
        while v < h_end && (p[v] == b' ' || p[v] == b'\t') {
            v += 1;
        }
        let value = &p[v..h_end];
        if name.eq_ignore_ascii_case(b"Connection") {
            *close = value.eq_ignore_ascii_case(b"close");
        } else if name.eq_ignore_ascii_case(b"Content-Length") {
            body = match content_length(value, BUF_SIZE) {
                Some(n) => n,
                None => return Parse::Bad,
            };
        } else if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
            return Parse::Bad; // no chunked bodies here
        }
        h = h_end + 2;
    }
    let total = head + body;
    if total <= p.len() {
        Parse::Complete(total)
    } else if total > BUF_SIZE {
        Parse::Bad
    } else {
        Parse::Incomplete
    }
}

async fn http(mut s: TcpStream) {
    let mut inb = vec![0u8; BUF_SIZE];
    let mut out: Vec<u8> = Vec::with_capacity(BUF_SIZE);
    let mut have = 0;
    loop {
        // Answer every complete request in the buffer, in one write where they fit.
        let mut used = 0;
        let mut close = false;
        let mut bad = false;
        out.clear();
        while !close {
            match parse(&inb[used..have], &mut close) {
                Parse::Complete(len) => {
                    used += len;
                    // The same flush point as tpc-http (its sizeof(OK) counts the NUL).
                    if out.len() + OK.len() + 1 > BUF_SIZE {
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                    out.extend_from_slice(OK);
                }
                Parse::Incomplete => break,
                Parse::Bad => {
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            out.extend_from_slice(BAD); // a Vec: no overflow whatever out holds
            close = true;
        }
        if (!out.is_empty() && s.write_all(&out).await.is_err()) || close {
            return;
        }
        inb.copy_within(used..have, 0);
        have -= used;
        match s.read(&mut inb[have..]).await {
            Ok(0) | Err(_) => return, // the peer closed, or an error
            Ok(n) => have += n,
        }
    }
}

async fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn serve(is_http: bool, addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!(
        "tokio-server: {} listening on {} (tokio {} current_thread, task per connection)",
        if is_http { "http" } else { "echo" },
        listener.local_addr()?,
        env!("TOKIO_VERSION")
    );
    loop {
        let s = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin (blocks the
                // runtime for 10 ms, which only ever happens on this error path).
                eprintln!("tokio-server: accept: {}", e);
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        if is_http {
            tokio::spawn(http(s));
        } else {
            tokio::spawn(echo(s));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || (args[1] != "http" && args[1] != "echo") {
        eprintln!("usage: tokio-server http|echo ADDR     (ADDR: 127.0.0.1:8080, [::1]:8080)");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    let addr = args[2].clone();
    if let Err(e) = rt.block_on(serve(args[1] == "http", addr)) {
        eprintln!("tokio-server: cannot listen on {}: {}", args[2], e);
        std::process::exit(1);
    }
}
