//! Map declarations, and the one way an LRU entry is created from its template. Sizes and reasons
//! are documented in `scanwatch_common::maps`.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use scanwatch_common::{
    addr::SourceKey,
    admission::AdmissionSlot,
    block::{BlockEntry, CachedBlock},
    config::KernelConfig,
    distributed::{PortState, TargetState},
    evidence::{HANDSHAKE_HINT_SLOTS, Verified},
    flow::{FlowKey, FlowState},
    maps::{
        ACCEPTED_SLOTS, ADMISSION_SLOTS, ANSWERED_CAPACITY, BLOCK_CACHE_CAPACITY,
        BLOCKLIST_CAPACITY, BLOCKS_CAPACITY, EGRESS_CAPACITY, EVENTS_BYTES, FLOWS_CAPACITY,
        HANDSHAKES_CAPACITY, IGNORE_CAPACITY, INBOUND_SLOTS, LONG_CAPACITY, OWNERS_CAPACITY,
        PORT_SLOTS, TARGETS_CAPACITY, TRACKER_CAPACITY, VERIFIED_CAPACITY, WEB_SAMPLES_BYTES,
        WEB_SEEN_CAPACITY, WIDE_CAPACITY,
    },
    owner::{Sender, SocketOwner},
    presence::PRESENCE_ENTRIES,
    state::SourceState,
    stats::STATS_LEN,
    ticks::ClockSample,
    web::WebConnection,
    wide::WideState,
};

#[map]
pub static CONFIG: Array<KernelConfig> = Array::with_max_entries(1, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

#[map]
pub static TRACKER: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(TRACKER_CAPACITY, 0);

#[map]
pub static ADMISSION: Array<AdmissionSlot> = Array::with_max_entries(ADMISSION_SLOTS, 0);

#[map]
pub static IGNORE: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(IGNORE_CAPACITY, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static OWNERS: LruHashMap<u64, SocketOwner> = LruHashMap::with_max_entries(OWNERS_CAPACITY, 0);

/// This CPU's egress probe's sender, between counting it and sending its event (`owner::hold`).
#[map]
pub static SENDER: PerCpuArray<Sender> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static EMPTY_STATE: Array<SourceState> = Array::with_max_entries(1, 0);

#[map]
pub static CLOCK_SAMPLE: Array<ClockSample> = Array::with_max_entries(1, 0);

#[map]
pub static BLOCKS: HashMap<SourceKey, BlockEntry> = HashMap::with_max_entries(BLOCKS_CAPACITY, 0);

#[map]
pub static BLOCKLIST: LpmTrie<[u8; 16], BlockEntry> =
    LpmTrie::with_max_entries(BLOCKLIST_CAPACITY, 0);

/// The block presence bitmap (`scanwatch_common::presence`), 2.125 MiB. Memory-mappable
/// (`BPF_F_MMAPABLE`, Linux >= 5.5, commit fc9702273e2e) so user space sets bits with atomic
/// ORs, never losing one to a concurrent read-modify-write.
#[map]
pub static BLOCK_PRESENCE: Array<u64> = Array::with_max_entries(PRESENCE_ENTRIES, BPF_F_MMAPABLE);

/// The block trie's positive verdicts (`scanwatch_common::maps::BLOCK_CACHE`).
#[map]
pub static BLOCK_CACHE: LruHashMap<SourceKey, CachedBlock> =
    LruHashMap::with_max_entries(BLOCK_CACHE_CAPACITY, 0);

#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(FLOWS_CAPACITY, 0);

/// Inbound UDP conversations: one slot each, fingerprint and time (see `flows::note_inbound`).
/// Not resizable at load time: the slot index is masked with `INBOUND_SLOTS` in the program.
#[map]
pub static INBOUND: Array<u64> = Array::with_max_entries(INBOUND_SLOTS, 0);

/// TCP connections this host accepted: one slot each, fingerprint and time (see
/// `flows::note_accepted`). Not resizable at load time: the slot index is masked with
/// `ACCEPTED_SLOTS` in the program.
#[map]
pub static ACCEPTED: Array<u64> = Array::with_max_entries(ACCEPTED_SLOTS, 0);

/// Per-source state over the long window (`track::long_state`).
#[map]
pub static LONG: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(LONG_CAPACITY, 0);

/// Per-prefix state at the wide IPv6 level (`wide::record`).
#[map]
pub static WIDE: LruHashMap<SourceKey, WideState> = LruHashMap::with_max_entries(WIDE_CAPACITY, 0);

#[map]
pub static EMPTY_WIDE: Array<WideState> = Array::with_max_entries(1, 0);

#[map]
pub static EGRESS: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(EGRESS_CAPACITY, 0);

/// Remotes that answered our flows → time of the latest answer (`evidence::note_answer`).
#[map]
pub static ANSWERED: LruHashMap<SourceKey, u64> =
    LruHashMap::with_max_entries(ANSWERED_CAPACITY, 0);

/// SYN-ACKs this host sent → the ack number completing them (`evidence::note_syn_ack`).
#[map]
pub static HANDSHAKES: LruHashMap<FlowKey, u32> =
    LruHashMap::with_max_entries(HANDSHAKES_CAPACITY, 0);

/// Expected ack numbers of recent SYN-ACKs, by slot: the cheap gate before `HANDSHAKES`.
#[map]
pub static HANDSHAKE_HINTS: Array<u32> = Array::with_max_entries(HANDSHAKE_HINT_SLOTS, 0);

/// Remotes that completed a handshake → when, and their hop count.
#[map]
pub static VERIFIED: LruHashMap<SourceKey, Verified> =
    LruHashMap::with_max_entries(VERIFIED_CAPACITY, 0);

/// Per-destination distributed-scan state (`scanwatch_common::distributed`).
#[map]
pub static TARGETS: LruHashMap<SourceKey, TargetState> =
    LruHashMap::with_max_entries(TARGETS_CAPACITY, 0);

#[map]
pub static EMPTY_TARGET: Array<TargetState> = Array::with_max_entries(1, 0);

/// Per-port distributed-sweep state (`scanwatch_common::distributed::PortState`), one slot per
/// seeded hash of the (protocol, port).
#[map]
pub static PORTS: Array<PortState> = Array::with_max_entries(PORT_SLOTS, 0);

/// First requests of connections to web ports (`web::on_segment`), for the daemon's
/// signature matching.
#[map]
pub static WEB_SAMPLES: RingBuf = RingBuf::with_byte_size(WEB_SAMPLES_BYTES, 0);

/// Connections already sampled → when (`web::on_segment`).
#[map]
pub static WEB_SEEN: LruHashMap<WebConnection, u64> =
    LruHashMap::with_max_entries(WEB_SEEN_CAPACITY, 0);

/// Per-CPU room for one LPM-trie key. The key type is packed (a 4-byte prefix length, then 16
/// address bytes); built on the stack, its address half would be stored with misaligned 8-byte
/// stores, which the verifier refuses on the stack but allows in map memory.
#[map]
pub static LPM_KEY: PerCpuArray<Key<[u8; 16]>> = PerCpuArray::with_max_entries(1, 0);

/// A full-length (/128) LPM key for `addr`, in this CPU's [`LPM_KEY`] slot.
#[inline(always)]
pub fn lpm_key(addr: &scanwatch_common::addr::SourceKey) -> Option<&'static Key<[u8; 16]>> {
    let key = LPM_KEY.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; the program runs to completion before the slot is reused.
    unsafe {
        (*key).prefix_len = 128;
        (*key).data = addr.addr;
        Some(&*key)
    }
}

/// The value of `key` in LRU `map`, created from `template`'s value (its all-zero first slot)
/// when absent, and whether this call inserted it (for the caller's insert counter, which the
/// flood watch reads). NOEXIST: another CPU may have inserted the same key meanwhile; then its
/// entry is the one returned.
#[inline(always)]
pub fn entry<K, V>(map: &LruHashMap<K, V>, template: &Array<V>, key: &K) -> Option<(*mut V, bool)> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Some((v, false));
    }
    let template = template.get(0)?;
    let inserted = map.insert(key, template, u64::from(BPF_NOEXIST)).is_ok();
    Some((map.get_ptr_mut(key)?, inserted))
}
