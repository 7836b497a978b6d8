//! Small services the lab runs inside a namespace: HTTP ports (served by `tiny_http`) and UDP
//! responders, each counting what it answered.

use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::netns::{Netns, spawn_in_netns};

/// Tiny servers on one thread inside a namespace, stopped and joined on drop: HTTP ports that
/// answer each request with `200 OK` and `hello from port P` ([`Service::tcp`]), or a UDP port
/// that answers every datagram, DNS-style: the query echoed with the QR and RA bits set
/// ([`Service::udp`]), or echoed unchanged ([`Service::udp_echo`]).
#[derive(Debug)]
pub struct Service {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<Result<Result<()>>>>,
}

/// The body a [`Service::tcp`] port answers with.
pub fn service_body(port: u16) -> String {
    format!("hello from port {port}\n")
}

impl Service {
    /// Listens on `ports` of `addr` inside `ns` (bound before this returns).
    pub fn tcp(ns: &Netns, addr: IpAddr, ports: &[u16]) -> Result<Self> {
        let ports = ports.to_vec();
        Self::start(ns, move |stop, served, bound| {
            let servers = ports
                .iter()
                .map(|&port| {
                    tiny_http::Server::http((addr, port))
                        .map(|server| (port, server))
                        .map_err(|e| anyhow!("binding {addr} port {port}: {e}"))
                })
                .collect::<Result<Vec<_>>>();
            let servers = match servers {
                Ok(s) => {
                    let _ = bound.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = bound.send(Err(format!("{e:#}")));
                    return Err(e);
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for (port, server) in &servers {
                    match server.try_recv() {
                        Ok(Some(request)) => {
                            idle = false;
                            let answer = tiny_http::Response::from_string(service_body(*port));
                            if request.respond(answer).is_ok() {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return Err(anyhow!(e).context("receiving a request")),
                    }
                }
                if idle {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
    }

    /// Answers every datagram to `addr` inside `ns`, DNS-style (bound before this returns).
    pub fn udp(ns: &Netns, addr: SocketAddr) -> Result<Self> {
        Self::udp_delayed(ns, addr, Duration::ZERO)
    }

    /// Like [`Service::udp`], but each answer leaves `delay` after its query came (at 20 ms
    /// granularity): a recursive resolver's cache miss, a slow upstream.
    pub fn udp_delayed(ns: &Netns, addr: SocketAddr, delay: Duration) -> Result<Self> {
        Self::udp_answering(ns, addr, delay, dns_answer)
    }

    /// Echoes every datagram to `addr` inside `ns` unchanged (bound before this returns).
    pub fn udp_echo(ns: &Netns, addr: SocketAddr) -> Result<Self> {
        Self::udp_answering(ns, addr, Duration::ZERO, |_| {})
    }

    /// Answers every datagram to `addr` inside `ns`, `delay` after it came, with the datagram
    /// as `answer` rewrites it.
    fn udp_answering(
        ns: &Netns,
        addr: SocketAddr,
        delay: Duration,
        answer: fn(&mut [u8]),
    ) -> Result<Self> {
        Self::start(ns, move |stop, served, bound| {
            let socket = match UdpSocket::bind(addr).and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(20)))
                    .map(|()| s)
            }) {
                Ok(s) => {
                    let _ = bound.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = bound.send(Err(format!("binding {addr}: {e}")));
                    return Err(e.into());
                }
            };
            let mut buf = [0u8; 1500];
            let mut pending = VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    answer(&mut buf[..n]);
                    pending.push_back((Instant::now() + delay, from, buf[..n].to_vec()));
                }
                while pending
                    .front()
                    .is_some_and(|(due, ..)| *due <= Instant::now())
                {
                    let Some((_, to, bytes)) = pending.pop_front() else {
                        break;
                    };
                    if socket.send_to(&bytes, to).is_ok() {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        })
    }

    fn start(
        ns: &Netns,
        serve: impl FnOnce(
            &AtomicBool,
            &AtomicUsize,
            std::sync::mpsc::Sender<std::result::Result<(), String>>,
        ) -> Result<()>
        + Send
        + 'static,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            spawn_in_netns(ns.name(), move || serve(&stop, &served, bound_tx))
        };
        let mut service = Self {
            stop,
            served,
            thread: Some(thread),
        };
        match bound_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(service),
            Ok(Err(e)) => bail!("a service in {} did not start: {e}", ns.name()),
            // The thread ended (or hangs) without a word: it could not enter the namespace.
            Err(_) => Err(service
                .join()
                .err()
                .unwrap_or_else(|| anyhow!("a service in {} did not start", ns.name()))),
        }
    }

    /// Requests answered so far (HTTP responses written, or datagrams answered).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the server; how many requests it answered, or its error.
    pub fn stop(mut self) -> Result<usize> {
        self.join()?;
        Ok(self.served())
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("a service thread panicked"))?
                .context("entering the service's namespace")?,
            None => Ok(()),
        }
    }
}

/// A DNS-style answer: the query with the QR and RA bits set.
fn dns_answer(answer: &mut [u8]) {
    if answer.len() >= 4 {
        answer[2] |= 0x80; // QR: a response
        answer[3] |= 0x80; // RA: recursion available
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
