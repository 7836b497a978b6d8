//! Thresholds per detection kind, all read from the table of kinds
//! (`scanwatch_common::kinds::KINDS`): the presets of each [`Sensitivity`], the tables of
//! overrides the configuration file may hold (`[thresholds]`, `[long_thresholds]`,
//! `[egress_thresholds]`, keyed by kind name), each kind's counting limit, and their merge
//! into the [`KindThresholds`] the agent runs with.

use scanwatch_common::{
    distinct::saturation_estimate,
    event::{DETECTION_KINDS, DetectionKind},
    kinds::{
        COUNTED_KINDS, DISTRIBUTED_HOSTS, DISTRIBUTED_HOSTS_ESTIMATOR, Directions, KINDS, KindSpec,
        Presets, THRESHOLD_KEYS,
    },
};
use serde::{Deserialize, Deserializer, de};

use crate::settings::{ConfigError, invalid};

/// Sensitivity preset: a set of thresholds, each overridable (`thresholds` reads them from the
/// table of kinds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Fewer alerts: only scans well above what busy clients do.
    Low,
    /// The default.
    #[default]
    Medium,
    /// More alerts: small scans too; expect to tune `ignore`.
    High,
}

impl Sensitivity {
    /// The preset's value of `presets`.
    const fn pick(self, presets: Presets) -> u32 {
        match self {
            Self::Low => presets.low,
            Self::Medium => presets.medium,
            Self::High => presets.high,
        }
    }

    /// The preset's thresholds of one table of the kinds' rows, by kind.
    fn table(self, presets: impl Fn(&KindSpec) -> Presets) -> [u32; DETECTION_KINDS] {
        KINDS.map(|spec| self.pick(presets(&spec)))
    }

    /// Thresholds of the preset, by kind (distinct ports, hosts or fragmented datagrams): the
    /// kinds' short-window presets (`KINDS` explains each).
    pub fn thresholds(self) -> [u32; DETECTION_KINDS] {
        self.table(|spec| spec.short)
    }

    /// Thresholds over the long window (slow scans) of the preset: the kinds' long-window
    /// presets (the short window's, but distributed_scan's 0).
    pub fn long_thresholds(self) -> [u32; DETECTION_KINDS] {
        self.table(|spec| spec.long)
    }

    /// The distributed-sweep threshold of the preset (`kinds::DISTRIBUTED_HOSTS`).
    pub const fn distributed_hosts(self) -> u32 {
        self.pick(DISTRIBUTED_HOSTS)
    }

    /// Egress thresholds of the preset: the kinds' egress presets (0 for the kinds measured at
    /// ingress only).
    pub fn egress_thresholds(self) -> [u32; DETECTION_KINDS] {
        self.table(|spec| spec.egress)
    }
}

/// Per-kind threshold overrides as written in a threshold table: keys are the names of the
/// kinds that have a threshold (`kinds::THRESHOLD_KEYS`), plus `distributed_hosts` (accepted
/// under `[thresholds]` only); 0 disables a kind. Any other key is refused as serde's
/// `deny_unknown_fields` refuses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    by_kind: [Option<u32>; DETECTION_KINDS],
    /// Not a kind: the per-port form of distributed_scan (`[thresholds]` only).
    pub distributed_hosts: Option<u32>,
}

impl Thresholds {
    /// The override of `kind`, if the table sets one.
    pub fn get(&self, kind: DetectionKind) -> Option<u32> {
        self.by_kind[kind as usize]
    }
}

impl<'de> Deserialize<'de> for Thresholds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Thresholds;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of thresholds by kind name")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Thresholds, A::Error> {
                const KEYS: &[&str] = &THRESHOLD_KEYS;
                let mut out = Thresholds::default();
                while let Some(key) = map.next_key::<String>()? {
                    let slot = if key == KEYS[COUNTED_KINDS] {
                        &mut out.distributed_hosts
                    } else {
                        match KINDS
                            .iter()
                            .find(|s| s.directions.counted() && s.name == key)
                        {
                            Some(spec) => &mut out.by_kind[spec.kind as usize],
                            None => return Err(de::Error::unknown_field(&key, KEYS)),
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(Visitor)
    }
}

/// A threshold per detection kind, in distinct items; 0 disables
/// the kind.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KindThresholds([u32; DETECTION_KINDS]);

impl KindThresholds {
    pub fn get(&self, kind: DetectionKind) -> u32 {
        self.0[kind as usize]
    }
}

impl std::fmt::Debug for KindThresholds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(DetectionKind::ALL.iter().map(|k| (k.name(), self.get(*k))))
            .finish()
    }
}

/// The most distinct items `kind`'s counter can tell apart (its estimator's
/// `kinds::Estimator::limit`): a linear-counting bitmap of `m` bits saturates near `m · ln m`
/// items (then reports a lower bound); protocol_scan's exact set holds 256 protocol numbers. A
/// threshold above it could never be crossed honestly.
pub fn counting_limit(kind: DetectionKind) -> u32 {
    kind.spec().counting_limit()
}

/// The distributed-sweep threshold: `[thresholds] distributed_hosts`, or the preset's; refused
/// above its 512-bit estimator's saturation and in the tables that do not measure it.
/// `tables` are the file's `[thresholds]`, `[long_thresholds]` and `[egress_thresholds]`.
pub(crate) fn distributed_hosts(
    sensitivity: Sensitivity,
    tables: [Option<&Thresholds>; 3],
) -> Result<u32, ConfigError> {
    let [short, long, egress] = tables;
    for (key, table) in [("long_thresholds", long), ("egress_thresholds", egress)] {
        if table.is_some_and(|t| t.distributed_hosts.is_some()) {
            return Err(invalid(
                key,
                "distributed_hosts is measured per port over the short window only; set it \
                 under [thresholds]"
                    .into(),
            ));
        }
    }
    let value = short
        .and_then(|t| t.distributed_hosts)
        .unwrap_or(sensitivity.distributed_hosts());
    let bits = DISTRIBUTED_HOSTS_ESTIMATOR
        .bits()
        .expect("distributed_hosts is counted in a bitmap");
    let limit = saturation_estimate(bits).floor() as u32;
    if value > limit {
        return Err(invalid(
            "thresholds",
            format!(
                "distributed_hosts = {value} can never be reached: its {bits}-bit estimator \
                 saturates near {limit} items; use at most {limit}"
            ),
        ));
    }
    Ok(value)
}

/// The thresholds of table `key`: each kind's override, or the preset's value; refused above
/// the kind's counting limit, and (under `[egress_thresholds]`) non-zero for a kind measured at
/// ingress only, whose egress threshold would never fire.
pub(crate) fn merge_thresholds(
    key: &'static str,
    preset: [u32; DETECTION_KINDS],
    overrides: Option<&Thresholds>,
) -> Result<KindThresholds, ConfigError> {
    let mut out = KindThresholds([0; DETECTION_KINDS]);
    for spec in &KINDS {
        let kind = spec.kind;
        let value = overrides
            .and_then(|o| o.get(kind))
            .unwrap_or(preset[kind as usize]);
        let limit = counting_limit(kind);
        if value > limit {
            let counter = match spec.estimator.bits() {
                Some(bits) => format!("its {bits}-bit estimator saturates near {limit} items"),
                None => format!("there are only {limit} IP protocol numbers"),
            };
            return Err(invalid(
                key,
                format!(
                    "{} = {value} can never be reached: {counter}; use at most {limit}",
                    spec.name
                ),
            ));
        }
        if key == "egress_thresholds" && value != 0 && spec.directions == Directions::Ingress {
            return Err(invalid(
                key,
                format!(
                    "{} is detected for remote sources only; set it under [thresholds]",
                    spec.name
                ),
            ));
        }
        out.0[kind as usize] = value;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_the_tables() {
        let medium = Sensitivity::Medium;
        assert_eq!(
            medium.thresholds(),
            [20, 25, 15, 10, 15, 20, 10, 10, 10, 40, 0]
        );
        assert_eq!(
            Sensitivity::High.egress_thresholds(),
            [10, 15, 12, 3, 8, 3, 0, 0, 0, 0, 0]
        );
        let mut long = Sensitivity::Low.thresholds();
        long[DetectionKind::DistributedScan as usize] = 0;
        assert_eq!(Sensitivity::Low.long_thresholds(), long);
        assert_eq!(medium.distributed_hosts(), 32);
    }

    #[test]
    fn threshold_tables_take_kind_names_and_refuse_other_keys() {
        let t: Thresholds = toml::from_str("port_scan = 3\ndistributed_hosts = 9").unwrap();
        assert_eq!(t.get(DetectionKind::PortScan), Some(3));
        assert_eq!(t.get(DetectionKind::HostSweep), None);
        assert_eq!(t.distributed_hosts, Some(9));
        for bad in ["port_scna = 3", "web_scan = 1"] {
            let e = toml::from_str::<Thresholds>(bad).unwrap_err().to_string();
            assert!(
                e.contains("unknown field") && e.contains("expected one of `port_scan`"),
                "{e}"
            );
        }
        assert!(toml::from_str::<Thresholds>("port_scan = -1").is_err());
    }
}
