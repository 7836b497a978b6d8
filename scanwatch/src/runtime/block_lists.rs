//! The agent's block-list reloads: the enforced lists into the pinned trie (drop mode), and
//! every list into the reputation index alerts' `listed_in` reads; both off the event loop.

use std::sync::Arc;

use anyhow::anyhow;
use log::{error, info};
use scanwatch_common::block::BlockReason;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    config::{Config, Mode},
    kernel::{blocks::BlockList, clock::Clock, pins::Instance},
    outputs::metrics::Metrics,
    policy::{
        block_lists::{MAX_LIST_ENTRIES, read_block_lists},
        enforce::Policy,
        reputation::{MAX_REPUTATION_ENTRIES, Reputation},
    },
};

/// Block-list trie updates per batch; the reload task yields between batches.
const LIST_BATCH: usize = 1000;

/// What a block-list reload did.
#[derive(Debug)]
pub struct ListLoad {
    /// Entries of the new set.
    count: usize,
    added: usize,
    removed: usize,
    /// Entries in the trie afterwards (lists and manual blocks).
    entries: usize,
}

/// A block-list reload's result; on an error the trie holds the previous lists.
pub type ListOutcome = anyhow::Result<ListLoad>;

/// The reloads in flight: the block-list reload, if any, and whether another was asked for
/// meanwhile; the reputation rebuild, if any, and the index it publishes.
pub struct ListReloads {
    lists: Option<JoinHandle<ListOutcome>>,
    lists_again: bool,
    /// Every block list's prefixes by name, for `listed_in` (rebuilt with the lists).
    pub reputation: watch::Sender<Arc<Reputation>>,
    reputation_reload: Option<JoinHandle<()>>,
}

impl Default for ListReloads {
    fn default() -> Self {
        Self {
            lists: None,
            lists_again: false,
            reputation: watch::Sender::new(Arc::default()),
            reputation_reload: None,
        }
    }
}

impl ListReloads {
    /// Starts reloading the configured block lists into the trie (drop mode, not dry run), off
    /// the event loop: files are parsed on a blocking thread, the trie is updated by a task of
    /// its own through a second handle on the pinned map, in batches. If a reload is running,
    /// another follows it.
    pub fn load_block_lists(&mut self, config: &Config, policy: &Policy, instance: &Instance) {
        if config.mode != Mode::Drop || config.dry_run {
            if !config.enforced_lists().is_empty() {
                info!(
                    "block lists are enforced in drop mode only (not in monitor mode or dry run)"
                );
            }
            return;
        }
        if self.lists.is_some() {
            self.lists_again = true;
            return;
        }
        let paths = config.enforced_lists();
        let policy = policy.clone();
        let instance = instance.clone();
        self.lists = Some(tokio::spawn(async move {
            let wanted = tokio::task::spawn_blocking(move || {
                read_block_lists(&paths, &policy, MAX_LIST_ENTRIES)
            })
            .await
            .map_err(|e| anyhow!("reading the block lists: {e}"))??;
            let mut trie = BlockList::open_pinned(&instance)?;
            let count = wanted.len();
            let (added, removed) = trie
                .sync_lists(&wanted, Clock::monotonic_ns(), LIST_BATCH)
                .await?;
            Ok(ListLoad {
                count,
                added,
                removed,
                entries: trie.len(),
            })
        }));
    }

    /// Rebuilds the reputation index of every block list (enforced or not, in every mode) on a
    /// blocking thread; a newer rebuild replaces one in flight.
    pub fn load_reputation(&mut self, config: &Config) {
        if let Some(old) = self.reputation_reload.take() {
            old.abort();
        }
        let lists = config.block_lists.clone();
        if lists.is_empty() {
            self.reputation.send_replace(Arc::default());
            return;
        }
        let sender = self.reputation.clone();
        self.reputation_reload = Some(tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                Reputation::read(&lists, MAX_REPUTATION_ENTRIES)
            })
            .await;
            match read {
                Ok(Ok(index)) => {
                    let ranges: usize = index.lists.iter().map(|l| l.index.len()).sum();
                    info!(
                        "reputation: {} lists indexed ({ranges} ranges) for alerts' listed_in",
                        index.lists.len()
                    );
                    sender.send_replace(Arc::new(index));
                }
                Ok(Err(e)) => error!("{e}"),
                Err(e) => error!("the reputation rebuild failed: {e}"),
            }
        }));
    }

    /// Waits for the reputation rebuild in flight, if any (at start, so the first findings
    /// already name their lists).
    pub async fn reputation_built(&mut self) {
        if let Some(first) = &mut self.reputation_reload {
            first.await.ok();
        }
    }

    /// The block-list reload's end; pending forever when none is running (for `select!`).
    pub async fn lists_done(&mut self) -> Result<ListOutcome, tokio::task::JoinError> {
        match self.lists.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    }

    /// A block-list reload ended: log it and count it. True when another was asked for
    /// meanwhile (the caller starts it).
    pub fn lists_loaded(
        &mut self,
        outcome: Result<ListOutcome, tokio::task::JoinError>,
        metrics: &Metrics,
    ) -> bool {
        self.lists = None;
        match outcome {
            Ok(Ok(done)) => {
                info!(
                    "block lists: {} CIDRs enforced ({} added, {} removed)",
                    done.count, done.added, done.removed
                );
                metrics
                    .blocks_added
                    .with_label_values(&[BlockReason::List.name()])
                    .inc_by(done.added as u64);
                metrics
                    .blocked_sources
                    .with_label_values(&["cidr"])
                    .set(done.entries as i64);
            }
            Ok(Err(e)) => error!("{e:#}"),
            Err(e) => error!("the block-list reload task failed: {e}"),
        }
        std::mem::take(&mut self.lists_again)
    }

    /// Stops the reload in flight (at exit).
    pub fn abort(&mut self) {
        if let Some(task) = self.lists.take() {
            task.abort();
        }
    }
}
