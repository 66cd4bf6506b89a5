//! Standard wasi:http, through the same corridor as `http.send`.
//!
//! wasmtime-wasi-http hands every outgoing request to
//! [`WasiHttpHooks::send_request`]. The hook notes the tool's intent and
//! returns a future that collects the request body (at most `limits.output`
//! bytes, charged to the run's [`HostMemory`] as it arrives), then walks [`Corridor::send_http`] on a blocking thread: the
//! same checks, approvals, audit events and connection to checked
//! addresses only. The tool sees wasi:http error codes, which say less than
//! `http.send`'s errors; the audit log has the details.
//!
//! A response stays charged to the run's budget until the tool drops its
//! body. A body the tool writes but never sends is buffered by
//! wasmtime-wasi-http, at most [`BODY_CHUNKS`] + 1 writes of at most
//! [`BODY_CHUNK`] bytes each; the number of such bodies is bounded by the
//! capacity of the run's resource table.
//!
//! Each request is a [`Flight`] from the hook to its last event (see
//! `corridor/flights.rs`): one that is never sent (a body never finished,
//! unreadable or too large, a header that is not text, the task ending
//! first) still gets its `call` and `result`, and the end of the task stops
//! every request still in flight before `task-end`.

use crate::bindings::sandbox::host::types::Error as HostError;
use crate::budget::{Charge, HostMemory};
use crate::corridor::{Flight, HostCtx};
use crate::http::Outgoing;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The largest write to an outgoing body's stream (wasmtime-wasi-http's
/// default is 1 MiB).
pub const BODY_CHUNK: usize = 16 * 1024;
/// The writes an outgoing body buffers beyond the one in flight.
pub const BODY_CHUNKS: usize = 1;

type ResponseFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// How a refusal looks to a wasi:http client.
fn to_error_code(e: &HostError) -> Error {
    match e {
        HostError::Denied(_) | HostError::NotApproved(_) => Error::HttpRequestDenied,
        HostError::Invalid(_) => Error::HttpRequestUriInvalid,
        HostError::NotFound(_) => Error::DestinationNotFound,
        HostError::LimitExceeded(m) => Error::InternalError(Some(format!("limit-exceeded: {m}"))),
        HostError::Failed(m) => Error::InternalError(Some(format!("failed: {m}"))),
    }
}

/// Records a request that is not sent (on a blocking thread: its `call`
/// walks the policy) and returns the error the tool gets.
async fn unsent(flight: Flight, why: HostError, error: Error) -> Error {
    let _ = tokio::task::spawn_blocking(move || flight.unsent(why)).await;
    error
}

/// The request body, whole: at most `max` bytes, every one charged to
/// `memory` (the charge comes back with the body and must live as long).
async fn collect(mut body: WasiBody, max: u64, memory: &HostMemory) -> Result<(Bytes, Charge), Error> {
    let mut charge = memory.charge();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame?.into_data() {
            len += chunk.len() as u64;
            if len > max {
                return Err(Error::HttpRequestBodySize(Some(max)));
            }
            if !charge.resize(len) {
                return Err(over_budget(memory));
            }
            chunks.push(chunk);
        }
    }
    if chunks.len() <= 1 {
        return Ok((chunks.pop().unwrap_or_default(), charge));
    }
    // Joined into one buffer: both are held while it is copied.
    if !charge.resize(2 * len) {
        return Err(over_budget(memory));
    }
    let mut whole = Vec::with_capacity(len as usize);
    for c in chunks {
        whole.extend_from_slice(&c);
    }
    let _ = charge.resize(len);
    Ok((Bytes::from(whole), charge))
}

fn over_budget(memory: &HostMemory) -> Error {
    Error::InternalError(Some(format!(
        "limit-exceeded: the bodies the host holds for this run would exceed {} bytes (the larger of limits.memory and limits.output)",
        memory.limit()
    )))
}

impl WasiHttpHooks for HostCtx {
    /// The `Host` header is derived from the URL by the corridor.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> ResponseFuture {
        let (parts, body) = request.into_parts();
        // Taken now, while the tool waits in `handle`: from here on the
        // request ends with its events, sent or not.
        let flight = self.corridor.take_off(self.intent.clone(), parts.method.as_str(), &parts.uri.to_string());
        let memory = self.corridor.memory().clone();
        Box::new(async move {
            let Some(flight) = flight else {
                // The task is ending: nothing new leaves the host.
                return Err(Error::InternalError(Some("the task has ended; the request was not sent".into())));
            };
            let mut ended = flight.ended();
            let max = flight.body_limit();
            let collected = tokio::select! {
                biased;
                Ok(_) = ended.wait_for(|e| *e) => None,
                body = collect(body, max, &memory) => Some(body),
            };
            // The charge lives as long as the body: until the request is done.
            let (body, _held) = match collected {
                Some(Ok(body)) => body,
                Some(Err(e)) => {
                    let why = match &e {
                        Error::HttpRequestBodySize(_) => HostError::LimitExceeded(format!(
                            "the request body is larger than {max} bytes (limits.output); nothing was sent"
                        )),
                        Error::InternalError(Some(m)) if m.starts_with("limit-exceeded") => {
                            HostError::LimitExceeded(format!("{m}; nothing was sent"))
                        }
                        e => HostError::Failed(format!("the request body could not be read ({e:?}); nothing was sent")),
                    };
                    return Err(unsent(flight, why, e).await);
                }
                None => {
                    let why = HostError::Failed(
                        "aborted: the task ended before the request body was finished; nothing was sent".into(),
                    );
                    let e = Error::InternalError(Some("the task has ended; the request was not sent".into()));
                    return Err(unsent(flight, why, e).await);
                }
            };
            let mut headers = Vec::with_capacity(parts.headers.len());
            for (name, value) in &parts.headers {
                let Ok(value) = value.to_str() else {
                    let why = HostError::Invalid(format!("header `{name}` is not text; nothing was sent"));
                    let e =
                        Error::HttpRequestHeaderSize { field_name: Some(name.as_str().to_owned()), field_size: None };
                    return Err(unsent(flight, why, e).await);
                };
                headers.push((name.as_str().to_owned(), value.to_owned()));
            }
            let timeout = options.and_then(|o| {
                [o.connect_timeout, o.first_byte_timeout, o.between_bytes_timeout].into_iter().flatten().min()
            });
            let out = Outgoing {
                method: parts.method.as_str().to_owned(),
                url: parts.uri.to_string(),
                headers,
                body,
                timeout: timeout.map(|t: Duration| t.max(Duration::from_millis(1))),
            };
            let outcome = tokio::task::spawn_blocking(move || flight.send(out))
                .await
                .map_err(|e| Error::InternalError(Some(format!("the request task failed: {e}"))))?;
            let reply = match outcome {
                // The run is stopping (the audit log failed); its next call ends it.
                Err(trap) => return Err(Error::InternalError(Some(trap.to_string()))),
                Ok(Err(refused)) => return Err(to_error_code(&refused)),
                Ok(Ok(reply)) => reply,
            };
            let mut response = http::Response::builder().status(reply.status);
            for (name, value) in &reply.headers {
                response = response.header(name.as_str(), value.as_str());
            }
            // The body keeps its charge: the bytes count until the tool drops it.
            let charge = reply.charge;
            let body = Full::new(Bytes::from(reply.body))
                .map_frame(move |frame| {
                    let _held = &charge;
                    frame
                })
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = response.body(body).map_err(|e| Error::InternalError(Some(e.to_string())))?;
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
