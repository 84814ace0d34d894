//! Tokio peer of libtpc's tpc-http and tpc-echo (examples/http.c, examples/echo.c) for
//! bench/net.sh.
//!
//!   tokio-server http|echo ADDR        ADDR: 127.0.0.1:8080, [::1]:8080 (port 0: any)
//!
//! One tokio current_thread runtime (the closest tokio equivalent of one libtpc shard) with the
//! I/O driver only, one task per connection, TCP_NODELAY on accepted sockets as tpc-http sets it.
//! http answers as examples/http.c does: requests parsed by httparse (hyper's parser; tpc-http
//! uses Debian's http_parser) with tpc-http's rules on top, keep-alive, the answers to all
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

/// One request at the start of `p`, parsed by httparse (hyper's parser), with examples/http.c's
/// rules on top: HTTP/1.0 closes unless "Connection" says otherwise, "Connection: close"
/// closes, a Content-Length body (up to 16 KiB) is skipped, Transfer-Encoding is refused.
/// Sets `close` when the connection must close after it.
fn parse(p: &[u8], close: &mut bool) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(p) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if p.len() >= BUF_SIZE => return Parse::Bad,
        Ok(httparse::Status::Partial) => return Parse::Incomplete,
        Err(_) => return Parse::Bad,
    };
    *close = req.version != Some(1);
    let mut body: usize = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("Connection") {
            *close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("Content-Length") {
            body = match content_length(h.value, BUF_SIZE) {
                Some(n) => n,
                None => return Parse::Bad,
            };
        } else if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Parse::Bad; // no chunked bodies here
        }
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
