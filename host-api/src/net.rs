//! Outbound HTTP on the host: the runtime's only ambient network
//! authority.
//!
//! [`Net::resolve_ambient`] turns a host name into addresses (names pinned
//! by the operator with `--resolve` first, then the system resolver); the
//! corridor checks every one of them against the policy; then
//! [`Net::exchange_ambient`] connects only to those checked addresses, in
//! order, so there is no second lookup for DNS rebinding to exploit. TLS
//! uses rustls with the webpki roots plus the manifest's `http.ca_certs`,
//! with the URL's host as the server name. One HTTP/1.1 request per
//! connection; the `Host` header comes from the URL; redirects are returned
//! as they are, never followed; the whole exchange is bounded by a timeout,
//! the response body by a size and the response head by a header count.
//! A response body is charged to the run's [`HostMemory`] as it arrives;
//! one that would take the run past that budget fails the request.

use crate::budget::{Charge, HostMemory};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sandbox_policy::http::{HostName, HttpTarget, Scheme};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The most response headers accepted.
pub const MAX_RESPONSE_HEADERS: usize = 100;

/// Response headers not passed to the tool.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"];

/// Resolver and TLS configuration for a run.
pub struct Net {
    tls: Arc<rustls::ClientConfig>,
    pins: HashMap<String, Vec<IpAddr>>,
    memory: HostMemory,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("pins", &self.pins).finish_non_exhaustive()
    }
}

/// One request, decided and ready to go.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The method, checked.
    pub method: String,
    /// The URL, parsed and allowed.
    pub target: HttpTarget,
    /// The addresses the name resolved to, every one checked.
    pub addrs: Vec<IpAddr>,
    /// Headers, checked (no `Host`, no hop-by-hop, no CR/LF).
    pub headers: Vec<(String, String)>,
    /// The body, possibly empty (shared, not copied, on its way out).
    pub body: Bytes,
}

/// The response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers as received (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// The address connected to.
    pub peer: SocketAddr,
    /// The body's bytes, counted against the run's [`HostMemory`] for as
    /// long as the reply (or whatever takes this charge over) lives.
    pub charge: Charge,
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// No answer within the timeout.
    Timeout(Duration),
    /// The response body was larger than allowed.
    TooLarge(u64),
    /// Holding the response body would take the run past its budget of
    /// host-held bytes (the limit, in bytes).
    OverBudget(u64),
    /// Connecting, TLS or HTTP failed; the reason is safe to show.
    Failed(String),
    /// The task ended first. `started`: the exchange had begun (the request
    /// may have reached the server); otherwise nothing was sent.
    Aborted {
        /// Whether anything may have left the host.
        started: bool,
    },
}

impl Net {
    /// Builds the resolver and TLS configuration: the webpki roots plus the
    /// PEM certificates in `ca_files`; `pins` maps host names to addresses
    /// used instead of DNS (like curl's `--resolve`).
    ///
    /// # Ambient Authority
    ///
    /// Reads `ca_files`. The `Net` it returns resolves names and opens
    /// connections with the process's authority, for addresses the caller
    /// has checked.
    pub fn new_ambient(ca_files: &[PathBuf], pins: Vec<(String, Vec<IpAddr>)>) -> Result<Net, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for file in ca_files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("CA certificates `{}`: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!("CA certificates `{}`: no certificate in the file", file.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("CA certificates `{}`: {e}", file.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let pins = pins.into_iter().map(|(host, addrs)| (host.to_ascii_lowercase(), addrs)).collect();
        Ok(Net { tls: Arc::new(tls), pins, memory: HostMemory::unlimited() })
    }

    /// Charges every body this `Net` holds to `memory` (see
    /// [`HostMemory`]); by default nothing is bounded but `max_body`.
    pub fn with_memory(mut self, memory: HostMemory) -> Net {
        self.memory = memory;
        self
    }

    /// The run's budget of host-held bytes.
    pub fn memory(&self) -> &HostMemory {
        &self.memory
    }

    /// The addresses of a host: an IP literal itself, a pinned name its
    /// pins, otherwise what the system resolver says. Never empty on `Ok`.
    pub fn resolve_ambient(&self, host: &HostName, port: u16) -> Result<Vec<IpAddr>, String> {
        let name = match host {
            HostName::Ip(ip) => return Ok(vec![*ip]),
            HostName::Domain(d) => d,
        };
        if let Some(addrs) = self.pins.get(name) {
            return Ok(addrs.clone());
        }
        let mut addrs: Vec<IpAddr> = Vec::new();
        let found = (name.as_str(), port).to_socket_addrs().map_err(|e| format!("cannot resolve `{name}`: {e}"))?;
        for a in found {
            if !addrs.contains(&a.ip()) {
                addrs.push(a.ip());
            }
        }
        if addrs.is_empty() {
            return Err(format!("`{name}` has no addresses"));
        }
        Ok(addrs)
    }

    /// Sends one request to the checked addresses and reads the whole
    /// response, within `timeout`, refusing bodies over `max_body` bytes.
    /// Once `ended` turns true (the task is ending) the exchange is dropped
    /// (its connection closed), or never begun if it already was.
    pub fn exchange_ambient(
        &self,
        ex: &Exchange,
        timeout: Duration,
        max_body: u64,
        mut ended: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Reply, NetError> {
        if *ended.borrow_and_update() {
            return Err(NetError::Aborted { started: false });
        }
        wasmtime_wasi::runtime::in_tokio(async {
            tokio::select! {
                biased;
                Ok(_) = ended.wait_for(|e| *e) => Err(NetError::Aborted { started: true }),
                result = tokio::time::timeout(timeout, self.exchange(ex, max_body)) => match result {
                    Ok(result) => result,
                    Err(_) => Err(NetError::Timeout(timeout)),
                },
            }
        })
    }

    async fn exchange(&self, ex: &Exchange, max_body: u64) -> Result<Reply, NetError> {
        let port = ex.target.port;
        let mut failures = Vec::new();
        let mut connected = None;
        for ip in &ex.addrs {
            let addr = SocketAddr::new(*ip, port);
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    connected = Some((s, addr));
                    break;
                }
                Err(e) => failures.push(format!("{addr}: {}", sandbox_policy::io_reason(&e))),
            }
        }
        let Some((tcp, peer)) = connected else {
            return Err(NetError::Failed(format!("cannot connect ({})", failures.join("; "))));
        };
        let _ = tcp.set_nodelay(true);
        let mut charge = self.memory.charge();
        let (status, headers, body) = match ex.target.scheme {
            Scheme::Http => http1(TokioIo::new(tcp), ex, max_body, &mut charge).await?,
            Scheme::Https => {
                let name = match &ex.target.host {
                    HostName::Domain(d) => ServerName::try_from(d.clone())
                        .map_err(|e| NetError::Failed(format!("`{d}` is not a TLS server name: {e}")))?,
                    HostName::Ip(ip) => ServerName::IpAddress((*ip).into()),
                };
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| NetError::Failed(format!("TLS with {peer} failed: {e}")))?;
                http1(TokioIo::new(tls), ex, max_body, &mut charge).await?
            }
        };
        Ok(Reply { status, headers, body, peer, charge })
    }
}

type Head = (u16, Vec<(String, String)>, Vec<u8>);

async fn http1<IO>(io: IO, ex: &Exchange, max_body: u64, charge: &mut Charge) -> Result<Head, NetError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let failed = |what: &str, e: hyper::Error| NetError::Failed(format!("{what}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_headers(MAX_RESPONSE_HEADERS)
        .handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| failed("HTTP handshake failed", e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = http::Request::builder()
        .method(ex.method.as_str())
        .uri(ex.target.origin_form())
        .header(http::header::HOST, ex.target.authority());
    for (name, value) in &ex.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(ex.body.clone()))
        .map_err(|e| NetError::Failed(format!("cannot build the request: {e}")))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_parse_too_large() {
                NetError::Failed(format!("the response head is too large (more than {MAX_RESPONSE_HEADERS} headers?)"))
            } else {
                failed("the request failed", e)
            }
        })?;
        let status = response.status().as_u16();
        // Hop-by-hop headers describe this connection, not the response the
        // tool receives (its body is already de-chunked).
        let headers = response
            .headers()
            .iter()
            .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()))
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed("reading the response failed", e))?;
            if let Ok(chunk) = frame.into_data() {
                let len = data.len() + chunk.len();
                if len as u64 > max_body {
                    return Err(NetError::TooLarge(max_body));
                }
                if len > data.capacity() {
                    // Grown as a `Vec` grows, and charged before it grows.
                    let grown = len.max(data.capacity() * 2).min(max_body as usize);
                    if !charge.resize(grown as u64) {
                        return Err(NetError::OverBudget(charge.limit()));
                    }
                    data.reserve_exact(grown - data.len());
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok((status, headers, data))
    }
    .await;
    driver.abort();
    result
}
