//! The service manager's side of `Type=notify` (packaging/systemd/scanwatch.service):
//! `READY=1` once both programs are attached and the metrics endpoint answers, `WATCHDOG=1`
//! from the event loop, `RELOADING=1`/`READY=1` around SIGHUP, `STOPPING=1` at shutdown.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use log::{debug, warn};
use sd_notify::NotifyState;

/// Notifications to the service manager, and the watchdog period it asked for.
#[derive(Debug)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$WATCHDOG_USEC` (for this process, `$WATCHDOG_PID`).
    pub fn from_env() -> Self {
        Self {
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// How often to ping the watchdog: half its timeout, as sd_watchdog_enabled(3) advises.
    /// `None` when the unit has no `WatchdogSec=`.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
            .map(|timeout| (timeout / 2).max(Duration::from_millis(10)))
    }

    /// The agent is attached and serving.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The event loop is alive.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// A SIGHUP reload starts; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(e) => warn!("reading CLOCK_MONOTONIC for RELOADING=1: {e}"),
        }
    }

    /// Shutdown starts: detaching and flushing.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("detaching")]);
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // A lost notification is systemd's to time out on; the agent carries on.
        debug!("notifying the service manager: {e}");
    }
}
