//! The metrics endpoint: `/` (a landing page), `/metrics` and `/healthz` over HTTP/1.1, served
//! by hyper with bounds on what a client can hold: a connection cap, a deadline for the
//! request head and a deadline for the whole connection (a client that never reads its answer
//! is dropped with its socket). At the cap, a new client takes the slot of the oldest client
//! that has held one past `head_grace` without sending its request head, so slow clients
//! cannot starve a scraper.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::debug;
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};

use super::Metrics;

/// Bounds on the endpoint's clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is closed at accept. A Prometheus server or two
    /// and a few humans need far fewer.
    pub max_connections: usize,
    /// Time a client gets to send its whole request head.
    pub header_timeout: Duration,
    /// Time a connection may live, request and answer included (one request per connection:
    /// no keep-alive), so a client that never reads cannot hold a task or a slot.
    pub connection_timeout: Duration,
    /// At the cap, a client that has not sent its request head this long after connecting
    /// gives its slot to a new client. A scraper sends its head at once.
    pub head_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            head_grace: Duration::from_secs(1),
        }
    }
}

/// Text exposition format 0.0.4, what `prometheus::TextEncoder` writes.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The landing page at `/` (prometheus' `writing_exporters.md`: an exporter links its metrics).
const LANDING_PAGE: &str = concat!(
    "<!DOCTYPE html>\n<html><head><title>scanwatch</title></head><body>\n",
    "<h1>scanwatch ",
    env!("CARGO_PKG_VERSION"),
    "</h1>\n<p>Detects network scanning in the kernel with XDP.</p>\n<ul>\n",
    "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
    "<li><a href=\"/healthz\">/healthz</a>: liveness (<code>ok</code>)</li>\n",
    "</ul>\n</body></html>\n"
);

/// Binds `addr` and serves `/`, `/metrics` and `/healthz` with the default [`Limits`] until
/// the returned task is aborted.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("binding the metrics endpoint {addr} (is it in use? set --metrics-addr)")
    })?;
    Ok(serve_on(listener, metrics, Limits::default()))
}

/// A connection holding a slot: when it was accepted, whether its request head arrived, and
/// how to end it.
struct Held {
    accepted: Instant,
    head: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// The connections holding slots, oldest first.
#[derive(Default)]
struct Clients(Mutex<VecDeque<Held>>);

impl Clients {
    /// Ends the oldest connection that has waited past `grace` without a request head; true
    /// when one was ended (its slot frees as its task drops).
    fn evict_slowest(&self, grace: Duration) -> bool {
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|h| !h.task.is_finished());
        let Some(i) = held
            .iter()
            .position(|h| !h.head.load(Ordering::Relaxed) && h.accepted.elapsed() >= grace)
        else {
            return false;
        };
        if let Some(h) = held.remove(i) {
            h.task.abort();
        }
        true
    }

    fn add(&self, held: Held) {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|h| !h.task.is_finished());
        list.push_back(held);
    }
}

/// How long the accept loop waits for an evicted client's slot to free.
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// Serves on a bound listener within `limits` until the returned task is aborted.
pub fn serve_on(listener: TcpListener, metrics: Arc<Metrics>, limits: Limits) -> JoinHandle<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Arc::new(Clients::default());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning on accept.
                    debug!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) if clients.evict_slowest(limits.head_grace) => {
                    match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                        Ok(Ok(slot)) => {
                            debug!(
                                "metrics endpoint: a client without a request head gave its slot to {peer}"
                            );
                            slot
                        }
                        _ => continue,
                    }
                }
                Err(_) => {
                    debug!(
                        "metrics endpoint: {} connections open, closing {peer}",
                        limits.max_connections
                    );
                    continue;
                }
            };
            let metrics = metrics.clone();
            let head = Arc::new(AtomicBool::new(false));
            let head_seen = head.clone();
            let service = service_fn(move |req| {
                head_seen.store(true, Ordering::Relaxed);
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let accepted = Instant::now();
            let task = tokio::spawn(async move {
                match tokio::time::timeout(limits.connection_timeout, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!("metrics client {peer}: {e}"),
                    Err(_) => debug!(
                        "metrics client {peer}: still connected after {:?}, dropped",
                        limits.connection_timeout
                    ),
                }
                drop(slot);
            });
            clients.add(Held {
                accepted,
                head,
                task: task.abort_handle(),
            });
        }
    })
}

/// The answer to one request; any method gets the page of its path.
fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            LANDING_PAGE.to_owned(),
        ),
        "/metrics" => (StatusCode::OK, METRICS_CONTENT_TYPE, metrics.render()),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    use super::*;

    /// A server on an ephemeral loopback port with `limits`.
    async fn start(limits: Limits) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(1024).unwrap());
        (addr, serve_on(listener, metrics, limits))
    }

    /// Sends `head` and reads the whole answer (the server closes after one request).
    async fn exchange(addr: SocketAddr, head: &[&[u8]]) -> String {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.set_nodelay(true).unwrap();
        for part in head {
            conn.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut answer))
            .await
            .expect("answered within 5 s")
            .unwrap();
        answer
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: scanwatch\r\n\r\n").into_bytes()
    }

    /// Reads until EOF or error; how long that took.
    async fn time_to_close(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut buf = [0u8; 256];
        tokio::time::timeout(within, async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
        .map(|()| started.elapsed())
    }

    #[tokio::test]
    async fn landing_page_links_metrics_and_healthz() {
        let (addr, server) = start(Limits::default()).await;
        let answer = exchange(addr, &[&get("/")]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("content-type: text/html"), "{answer}");
        assert!(answer.contains("href=\"/metrics\""), "{answer}");
        assert!(answer.contains("href=\"/healthz\""), "{answer}");
        server.abort();
    }

    #[tokio::test]
    async fn serves_metrics_and_healthz() {
        let (addr, server) = start(Limits::default()).await;
        let answer = exchange(addr, &[&get("/metrics")]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(METRICS_CONTENT_TYPE), "{answer}");
        assert!(answer.contains("scanwatch_packets_total"), "{answer}");
        let answer = exchange(addr, &[&get("/healthz")]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
        server.abort();
    }

    #[tokio::test]
    async fn unknown_path_is_not_found() {
        let (addr, server) = start(Limits::default()).await;
        let answer = exchange(addr, &[&get("/metricz")]).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(answer.contains("try /metrics or /healthz"), "{answer}");
        server.abort();
    }

    #[tokio::test]
    async fn request_head_is_read_across_segments() {
        let (addr, server) = start(Limits::default()).await;
        let answer = exchange(
            addr,
            &[b"GET /met", b"rics HTTP/1.1\r\nHost: x\r\n", b"\r\n"],
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("scanwatch_packets_total"),
            "{answer}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn client_that_never_sends_its_head_is_dropped_after_the_timeout() {
        let header_timeout = Duration::from_millis(300);
        let (addr, server) = start(Limits {
            header_timeout,
            ..Limits::default()
        })
        .await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        let closed = time_to_close(&mut conn, Duration::from_secs(5))
            .await
            .expect("the server closes a connection whose head never completes");
        assert!(closed >= header_timeout, "closed after {closed:?}");
        server.abort();
    }

    #[tokio::test]
    async fn connection_is_dropped_at_its_deadline_whatever_the_client_does() {
        let connection_timeout = Duration::from_millis(500);
        let (addr, server) = start(Limits {
            connection_timeout,
            ..Limits::default()
        })
        .await;
        // An idle client holds its slot only until the connection deadline.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let closed = time_to_close(&mut conn, Duration::from_secs(5))
            .await
            .expect("the server closes a connection at its deadline");
        assert!(
            closed >= connection_timeout.mul_f32(0.9),
            "closed after {closed:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn slow_clients_holding_every_slot_cannot_starve_a_scrape() {
        let (addr, server) = start(Limits::default()).await;
        // Every one of the 64 slots held by a client that connects and sends nothing.
        let mut slow = Vec::new();
        for _ in 0..Limits::default().max_connections {
            slow.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // A scrape gets its answer within a second, several times over.
        for _ in 0..3 {
            let started = Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(1), exchange(addr, &[&get("/metrics")]))
                    .await
                    .expect("scraped within a second");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(started.elapsed() < Duration::from_secs(1));
        }
        server.abort();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_until_a_slot_frees() {
        let (addr, server) = start(Limits {
            max_connections: 2,
            ..Limits::default()
        })
        .await;
        let mut held = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        // Let the server accept both before the third arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            time_to_close(&mut third, Duration::from_secs(2))
                .await
                .is_some(),
            "a third connection is closed at once"
        );
        // The held connections still get answers, and a freed slot serves a new client.
        held[0].write_all(&get("/healthz")).await.unwrap();
        let mut answer = String::new();
        held[0].read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.clear();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = exchange(addr, &[&get("/healthz")]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }
}
