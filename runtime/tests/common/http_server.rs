//! A small HTTP/1.1 server for the network tests, and a bare TCP tripwire.
//!
//! Both record EVERY connection they accept, before reading a byte, in a
//! log the test reads: it is the proof that nothing reached a place the
//! host refused. Only `std` (a thread per connection, `Connection: close`).
//! Both stop when dropped.
//!
//! Routes of [`HttpServer`] (the query string is ignored unless named):
//!
//! | path | answer |
//! |---|---|
//! | `/api/json` | 200, a JSON document (see [`JSON_BODY`]) |
//! | `/api/redirect?to=URL` | 302 with `Location: URL` (URL percent-decoded) |
//! | `/api/slow?ms=N` | 200 after sleeping N ms |
//! | `/api/huge?bytes=N` | 200 with N bytes of `x` |
//! | `/api/many-headers?n=N` | 200 with N extra headers `X-Many-I: I` |
//! | `/api/echo` | 200, JSON `{method, target, headers: [[name, value]...], body}` |
//! | anything else | 404 |
//!
//! Reading the log first makes sure every connection made so far has been
//! accepted: it connects a marker to the listener and waits until the
//! accept loop has seen it (the backlog is first in, first out). Markers
//! are not part of the log.

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The body of `/api/json`.
pub const JSON_BODY: &str = r#"{"data":{"items":[{"name":"alpha","id":1},{"name":"beta","id":2}],"count":2},"ok":true,"note":"from the test server"}"#;

/// One accepted connection and, once read, the request it carried.
#[derive(Debug, Clone, Default)]
pub struct Logged {
    /// The client's address (the `sandbox` process's end of the connection).
    pub peer: Option<SocketAddr>,
    /// The address the client connected to (this listener's).
    pub local: Option<SocketAddr>,
    /// The raw request line, `GET /api/json HTTP/1.1`, when one arrived.
    pub request_line: Option<String>,
    /// Header lines as received, name and value split at the first `:`
    /// (value trimmed).
    pub headers: Vec<(String, String)>,
    /// The request body (Content-Length or chunked).
    pub body: Vec<u8>,
    /// Every byte of the head, exactly as received.
    pub raw_head: Vec<u8>,
}

impl Logged {
    /// The request method, when a request line arrived.
    pub fn method(&self) -> Option<&str> {
        self.request_line.as_deref().and_then(|l| l.split(' ').next())
    }

    /// The request target (`/api/json?x=1`), when a request line arrived.
    pub fn target(&self) -> Option<&str> {
        self.request_line.as_deref().and_then(|l| l.split(' ').nth(1))
    }

    /// Values of a header, by case-insensitive name.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The single value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let v = self.header_values(name);
        assert!(v.len() <= 1, "header {name} sent {} times: {self:?}", v.len());
        v.first().copied()
    }
}

/// State shared by an accept loop, its connection threads and the test.
struct Shared {
    log: Mutex<Vec<Logged>>,
    /// Indices in `log` of connections made by [`Acceptor::sync`].
    markers: Mutex<Vec<usize>>,
    stop: AtomicBool,
}

/// A listener with an accept loop that records every connection, then
/// hands it to `handle` on its own thread.
struct Acceptor {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

type Handler = fn(TcpStream, usize, Arc<Shared>);

impl Acceptor {
    fn start(listener: TcpListener, handle: Handler) -> Acceptor {
        let addr = listener.local_addr().unwrap();
        let shared =
            Arc::new(Shared { log: Mutex::new(Vec::new()), markers: Mutex::new(Vec::new()), stop: false.into() });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let entry =
                    Logged { peer: stream.peer_addr().ok(), local: stream.local_addr().ok(), ..Logged::default() };
                let index = {
                    let mut log = s.log.lock().unwrap();
                    log.push(entry);
                    log.len() - 1
                };
                let s = s.clone();
                std::thread::spawn(move || handle(stream, index, s));
            }
        });
        Acceptor { addr, shared, thread: Some(thread) }
    }

    /// Waits until every connection made before this call was accepted
    /// (and logged): a marker connection goes through the same backlog.
    fn sync(&self) {
        let marker = TcpStream::connect(self.addr).unwrap();
        let me = marker.local_addr().unwrap();
        let start = Instant::now();
        loop {
            let index = self.shared.log.lock().unwrap().iter().rposition(|e| e.peer == Some(me));
            if let Some(i) = index {
                self.shared.markers.lock().unwrap().push(i);
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the test server's accept loop is stuck");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(marker);
    }

    fn log(&self) -> Vec<Logged> {
        self.sync();
        let markers = self.shared.markers.lock().unwrap().clone();
        let log = self.shared.log.lock().unwrap();
        log.iter().enumerate().filter(|(i, _)| !markers.contains(i)).map(|(_, e)| e.clone()).collect()
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; it sees `stop` and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The test HTTP server. See the module documentation for its routes.
pub struct HttpServer {
    acceptor: Acceptor,
}

impl HttpServer {
    /// A server on 127.0.0.1 at a free port.
    pub fn start() -> HttpServer {
        HttpServer::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).unwrap()
    }

    /// A server on a given address (port 0: any free one).
    pub fn start_on(addr: SocketAddr) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)?;
        Ok(HttpServer { acceptor: Acceptor::start(listener, serve) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    pub fn port(&self) -> u16 {
        self.acceptor.addr.port()
    }

    /// `http://IP:PORT` (no final slash).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `http://IP:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Every connection accepted so far (markers left out), with what it
    /// carried.
    pub fn log(&self) -> Vec<Logged> {
        self.acceptor.log()
    }

    /// The logged connections that carried a request line.
    pub fn requests(&self) -> Vec<Logged> {
        self.log().into_iter().filter(|e| e.request_line.is_some()).collect()
    }

    /// Asserts that nothing connected at all, naming what did.
    pub fn assert_untouched(&self, what: &str) {
        let log = self.log();
        assert!(log.is_empty(), "{what}: the server saw {} connection(s): {log:#?}", log.len());
    }
}

/// A bare TCP listener that accepts, records and closes; for "nothing
/// connects here" checks (other ports, decoy addresses).
pub struct Tripwire {
    acceptor: Acceptor,
}

impl Tripwire {
    /// A tripwire on 127.0.0.1 at a free port.
    pub fn start() -> Tripwire {
        Tripwire::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).unwrap()
    }

    pub fn start_on(addr: SocketAddr) -> std::io::Result<Tripwire> {
        let listener = TcpListener::bind(addr)?;
        Ok(Tripwire { acceptor: Acceptor::start(listener, trip) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    pub fn port(&self) -> u16 {
        self.acceptor.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> Vec<Logged> {
        self.acceptor.log()
    }
}

/// Reads what a tripwire's client sends (a little), then closes.
fn trip(mut stream: TcpStream, index: usize, shared: Arc<Shared>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = vec![0; 4096];
    if let Ok(n) = stream.read(&mut buf) {
        shared.log.lock().unwrap()[index].raw_head = buf[..n].to_vec();
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Headers are read up to this size; a longer head is answered 431.
const MAX_HEAD: usize = 64 * 1024;
/// Bodies are read up to this size.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads one request, logs it, answers it.
fn serve(stream: TcpStream, index: usize, shared: Arc<Shared>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.by_ref().take((MAX_HEAD - head.len()) as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        head.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned();
        if text.is_empty() || head.len() >= MAX_HEAD {
            break;
        }
        lines.push(text);
    }
    let mut entry = Logged { raw_head: head, ..Logged::default() };
    let mut lines = lines.into_iter();
    entry.request_line = lines.next();
    for l in lines {
        let (name, value) = l.split_once(':').unwrap_or((&l, ""));
        entry.headers.push((name.to_owned(), value.trim().to_owned()));
    }
    entry.body = read_body(&mut reader, &entry);
    {
        let mut log = shared.log.lock().unwrap();
        let e = &mut log[index];
        e.request_line = entry.request_line.clone();
        e.headers = entry.headers.clone();
        e.body = entry.body.clone();
        e.raw_head = entry.raw_head.clone();
    }
    if entry.request_line.is_none() {
        return;
    }
    let mut stream = stream;
    let _ = respond(&mut stream, &entry);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Let the client read everything before the socket is closed.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = std::io::copy(&mut stream, &mut std::io::sink());
}

fn read_body(reader: &mut impl BufRead, req: &Logged) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(n) = req.header_values("content-length").first().and_then(|n| n.parse::<usize>().ok()) {
        let _ = reader.take(n.min(MAX_BODY) as u64).read_to_end(&mut body);
    } else if req.header_values("transfer-encoding").iter().any(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let size = size.trim().split(';').next().unwrap_or("");
            let Ok(n) = usize::from_str_radix(size, 16) else { break };
            if n == 0 || body.len() + n > MAX_BODY {
                let mut rest = String::new();
                let _ = reader.read_line(&mut rest);
                break;
            }
            let mut chunk = vec![0; n];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            let _ = reader.read_line(&mut crlf);
        }
    }
    body
}

/// The value of a query parameter, percent-decoded.
fn query_param(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(stream: &mut TcpStream, req: &Logged) -> std::io::Result<()> {
    let target = req.target().unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let num = |key: &str| query_param(target, key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    match path {
        "/api/json" => send(stream, "200 OK", &[("Content-Type", "application/json".into())], JSON_BODY.as_bytes()),
        "/api/redirect" => {
            let to = query_param(target, "to").unwrap_or_else(|| "/".into());
            send(stream, "302 Found", &[("Location", to)], b"redirecting\n")
        }
        "/api/slow" => {
            std::thread::sleep(Duration::from_millis(num("ms")));
            send(stream, "200 OK", &[("Content-Type", "text/plain".into())], b"slow done\n")
        }
        "/api/huge" => {
            let n = num("bytes") as usize;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
            )?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                stream.write_all(&chunk[..k])?;
                left -= k;
            }
            Ok(())
        }
        "/api/many-headers" => {
            let headers: Vec<(String, String)> =
                (0..num("n")).map(|i| (format!("X-Many-{i}"), i.to_string())).collect();
            let refs: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            send(stream, "200 OK", &refs, b"many headers\n")
        }
        "/api/echo" => {
            let body = json!({
                "method": req.method(),
                "target": target,
                "headers": req.headers.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
                "body": String::from_utf8_lossy(&req.body),
            });
            send(stream, "200 OK", &[("Content-Type", "application/json".into())], body.to_string().as_bytes())
        }
        _ => send(stream, "404 Not Found", &[("Content-Type", "text/plain".into())], b"not found\n"),
    }
}

fn send(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}
