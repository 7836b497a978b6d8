//! What drop mode decided about a finding, as its alert says: the verdict and, when it did not
//! block, the refusal.

use std::time::Duration;

use serde::Serialize;

/// Why a finding in drop mode was not blocked (the alert's `not_blocked`, and the `reason`
/// label of `scanwatch_blocks_refused_total`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    /// Dry run: it would have been blocked.
    DryRun,
    /// On the `never_block` list.
    NeverBlock,
    /// One of this host's own addresses.
    OwnAddress,
    /// One of this host's default gateways.
    Gateway,
    /// One of this host's configured DNS resolvers.
    Resolver,
    /// The block would cover one of this host's connected networks.
    ConnectedNetwork,
    /// A remote that answered a flow this host opened, recently.
    AnsweredPeer,
    /// The source completed a TCP handshake with this host at one hop count, and the probes
    /// naming it arrived at another: someone elsewhere forged its address.
    SuspectedSpoof,
    /// The source completed a TCP handshake with this host, and the finding naming it carries
    /// no hop count of its packets (an ACK scan's RSTs, an aggregate's sampled sources): unknown
    /// evidence never blocks a source with verified evidence against it.
    UnverifiedEvidence,
    Loopback,
    /// The protected set (addresses, routes, resolvers) cannot be read: fail closed.
    ProtectedSetUnavailable,
    /// Over the token bucket of new automatic blocks (`max_blocks_per_second`).
    RateLimited,
    /// Over its source prefix's share of that bucket (a tenth, per IPv4 /16 or IPv6 /32).
    PrefixRateLimited,
    /// The block map is full (blocks are never evicted to make room).
    Full,
    /// Writing the block failed.
    Error,
}

impl Refusal {
    /// The metric label and alert value.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// What the protected network is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "a loopback address",
            Self::OwnAddress => "an address of this host",
            Self::Gateway => "a default gateway",
            Self::Resolver => "a DNS resolver of this host",
            Self::ConnectedNetwork => "a network this host is connected to",
            Self::AnsweredPeer => "a peer that answered this host's own connection",
            Self::SuspectedSpoof => {
                "a source whose probes arrive at another hop count than its own handshake"
            }
            Self::UnverifiedEvidence => {
                "a source that completed a handshake, named by evidence without hop counts"
            }
            Self::NeverBlock => "a never_block network",
            Self::ProtectedSetUnavailable => {
                "an unknown set of protected peers (they cannot be read)"
            }
            Self::RateLimited => "a spent block rate budget",
            Self::PrefixRateLimited => "its source prefix's spent share of the block rate budget",
            Self::DryRun => "dry run",
            Self::Full => "a full block map",
            Self::Error => "an error",
        }
    }
}

/// What enforcement did with a finding, as written in its alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Monitor mode: alert only.
    Alert,
    /// Blocked for this long (a new block).
    Block { ttl: Duration, offenses: u32 },
    /// Already blocked (another kind from the same source): the block has this long left.
    AlreadyBlocked { ttl: Duration },
    /// Dry run: would have blocked for this long.
    WouldBlock { ttl: Duration },
    /// Not blocked, and why.
    NotBlocked(Refusal),
}
