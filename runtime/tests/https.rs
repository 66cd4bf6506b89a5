//! TLS for outbound requests: the webpki roots plus the manifest's
//! `http.ca_certs`, the URL's host as the server name. A rustls server
//! started by the test, with a certificate from a test CA, answers on
//! 127.0.0.1; its log shows which requests arrived.

#![allow(clippy::unwrap_used)] // a test that cannot set up its server fails

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A test CA (PEM) and a server configuration with a certificate it
/// signed for `names`.
fn pki(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "sandbox test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

/// Serves HTTPS on 127.0.0.1; each connection's outcome goes to the log:
/// the request head, or the TLS error.
fn serve(config: Arc<rustls::ServerConfig>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            let outcome = loop {
                match tls.read(&mut buf) {
                    Ok(0) => break format!("closed: {}", String::from_utf8_lossy(&head)),
                    Ok(n) => {
                        head.extend_from_slice(&buf[..n]);
                        if head.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsecured");
                            let _ = tls.flush();
                            break String::from_utf8_lossy(&head).into_owned();
                        }
                    }
                    Err(e) => break format!("tls error: {e}"),
                }
            };
            seen.lock().unwrap().push(outcome);
        }
    });
    (port, log)
}

fn manifest(rule: &str, with_ca: bool) -> Fixture {
    let ca = if with_ca { "ca_certs = [\"ca.pem\"]\n" } else { "" };
    Fixture::new(&format!(
        "[http]\nallow_private = [\"127.0.0.1/32\"]\ntimeout = \"5s\"\n{ca}[[http.allow]]\nurl = \"{rule}\"\n"
    ))
}

#[test]
fn a_server_signed_by_a_listed_ca_is_trusted() {
    let (ca, config) = pki(&["api.test", "127.0.0.1"]);
    let (port, log) = serve(config);
    let f = manifest(&format!("https://api.test:{port}/**"), true);
    std::fs::write(f.path("ca.pem"), &ca).unwrap();
    let url = format!("https://api.test:{port}/v1/items");
    let r = f.run_with("probe", &["--resolve", "api.test=127.0.0.1"], &["http", &url]);
    assert_eq!(r.line(&label(&["http", &url])), "ok status 200", "{r:?}");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("GET /v1/items HTTP/1.1\r\n"), "{seen:?}");
    assert!(seen[0].to_ascii_lowercase().contains(&format!("host: api.test:{port}")), "{seen:?}");
    let result = f.events().into_iter().find(|e| e["kind"] == "result" && e["capability"] == "http.send").unwrap();
    assert_eq!(result["status_code"], 200);
    assert_eq!(result["peer"], format!("127.0.0.1:{port}"));
    assert_eq!(result["bytes_out"], 7);
}

#[test]
fn an_ip_literal_is_checked_against_the_certificate_too() {
    let (ca, config) = pki(&["127.0.0.1"]);
    let (port, _log) = serve(config);
    let f = manifest(&format!("https://127.0.0.1:{port}/**"), true);
    std::fs::write(f.path("ca.pem"), &ca).unwrap();
    let url = format!("https://127.0.0.1:{port}/x");
    let r = f.run("probe", &["http", &url]);
    assert_eq!(r.line(&label(&["http", &url])), "ok status 200", "{r:?}");
}

#[test]
fn an_unknown_issuer_is_refused_and_no_request_is_sent() {
    let (_ca, config) = pki(&["api.test"]);
    let (port, log) = serve(config);
    let f = manifest(&format!("https://api.test:{port}/**"), false);
    let url = format!("https://api.test:{port}/x");
    let r = f.run_with("probe", &["--resolve", "api.test=127.0.0.1"], &["http", &url]);
    let line = r.line(&label(&["http", &url]));
    assert!(line.starts_with("failed:") && line.contains("TLS") && line.to_lowercase().contains("issuer"), "{line}");
    assert!(wait_for(Duration::from_secs(5), || !log.lock().unwrap().is_empty()));
    let seen = log.lock().unwrap().clone();
    assert!(seen.iter().all(|s| !s.contains("GET ")), "a request went out: {seen:?}");
    let result = f.events().into_iter().find(|e| e["kind"] == "result" && e["capability"] == "http.send").unwrap();
    assert_eq!(result["outcome"], "failed");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let (ca, config) = pki(&["other.test"]);
    let (port, log) = serve(config);
    let f = manifest(&format!("https://api.test:{port}/**"), true);
    std::fs::write(f.path("ca.pem"), &ca).unwrap();
    let url = format!("https://api.test:{port}/x");
    let r = f.run_with("probe", &["--resolve", "api.test=127.0.0.1"], &["http", &url]);
    let line = r.line(&label(&["http", &url]));
    assert!(line.starts_with("failed:") && line.contains("TLS"), "{line}");
    assert!(wait_for(Duration::from_secs(5), || !log.lock().unwrap().is_empty()));
    assert!(log.lock().unwrap().iter().all(|s| !s.contains("GET ")));
}

#[test]
fn an_unreadable_ca_file_refuses_the_start() {
    let f = manifest("https://api.test/**", true);
    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.is_empty());
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("ca.pem"), "{r:?}");
    std::fs::write(f.path("ca.pem"), "not a certificate\n").unwrap();
    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no certificate"), "{r:?}");
    let end = f.events().pop().unwrap();
    assert_eq!(end["status"], "refused");
}
