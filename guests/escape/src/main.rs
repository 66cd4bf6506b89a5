//! `escape`: tries every door out of the sandbox that is not `sandbox:host`
//! and asserts that each one is shut.
//!
//! ```text
//! escape [PORT]
//! ```
//!
//! PORT is a TCP port on 127.0.0.1 that the test listens on. Prints
//! `closed: ...` per door; exits 0 when all are shut, 1 (with `OPEN: ...`)
//! when any opened.

use std::net::{TcpStream, ToSocketAddrs, UdpSocket};

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9);
    let mut open = 0;
    let mut check = |door: &str, opened: bool| {
        if opened {
            open += 1;
            println!("OPEN: {door}");
        } else {
            println!("closed: {door}");
        }
    };
    check("read /etc/passwd", std::fs::read("/etc/passwd").is_ok());
    check("read /proc/self/environ", std::fs::read("/proc/self/environ").is_ok());
    check("list /", std::fs::read_dir("/").is_ok());
    check("list .", std::fs::read_dir(".").is_ok());
    check("stat /", std::fs::metadata("/").is_ok());
    check("create ./escape-was-here", std::fs::File::create("escape-was-here").is_ok());
    check("create /tmp/escape-was-here", std::fs::File::create("/tmp/escape-was-here").is_ok());
    check("environment variables", std::env::vars_os().next().is_some());
    check("current directory", std::env::current_dir().map(|d| d.as_os_str().len() > 1).unwrap_or(false));
    check(&format!("tcp connect 127.0.0.1:{port}"), TcpStream::connect(("127.0.0.1", port)).is_ok());
    check("tcp connect [::1]", TcpStream::connect(("::1", port)).is_ok());
    check("udp bind", UdpSocket::bind("127.0.0.1:0").is_ok());
    check("dns lookup localhost", ("localhost", 80).to_socket_addrs().is_ok());
    check("dns lookup example.com", ("example.com", 443).to_socket_addrs().is_ok());
    if open > 0 {
        println!("escape: {open} door(s) open");
        std::process::exit(1);
    }
    println!("escape: all doors shut");
}
