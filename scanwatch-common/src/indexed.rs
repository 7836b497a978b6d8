//! [`indexed_enum!`]: the one definition of the enums whose values index kernel arrays, events
//! and statistics slots (`PacketClass`, `DetectionKind`, `BlockReason`, `ParseError`,
//! `Counter`).

/// Declares a `#[repr(u32)]` enum whose values are indices, with its count constant and:
/// - `ALL`, every value in index order;
/// - `from_index`, the value at an index;
/// - `name`, its stable label as written in metrics, alerts and the CLI; under the `user`
///   feature the enum also derives `serde::Serialize`, to exactly that label.
///
/// Indices are written out (they are a format shared with the kernel and the daemon) and a
/// compile-time check holds them to their position in the list.
macro_rules! indexed_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $index:literal => $label:literal,
            )+
        }
        $(#[$cmeta:meta])*
        pub const $count:ident: usize;
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "user", derive(serde::Serialize))]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[cfg_attr(feature = "user", serde(rename = $label))]
                $variant = $index,
            )+
        }

        $(#[$cmeta])*
        pub const $count: usize = [$($index),+].len();

        impl $name {
            /// Every value, in index order.
            pub const ALL: [Self; $count] = [$(Self::$variant),+];

            /// The value at `index`, if there is one.
            pub const fn from_index(index: u32) -> Option<Self> {
                match index {
                    $($index => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// Stable label, as written in metrics, alerts and the CLI.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        const _: () = {
            let mut i = 0;
            while i < $count {
                assert!(
                    $name::ALL[i] as usize == i,
                    concat!(stringify!($name), ": indices must follow the declaration order")
                );
                i += 1;
            }
        };
    };
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use crate::{
        block::BlockReason,
        classify::PacketClass,
        event::DetectionKind,
        stats::{Counter, ParseError},
    };

    fn serialises_to_names<T: serde::Serialize + Copy>(all: &[T], name: fn(T) -> &'static str) {
        for &value in all {
            assert_eq!(
                serde_json::to_value(value).expect("serialises"),
                serde_json::Value::from(name(value))
            );
        }
    }

    #[test]
    fn serialises_to_its_name() {
        serialises_to_names(&DetectionKind::ALL, DetectionKind::name);
        serialises_to_names(&BlockReason::ALL, BlockReason::name);
        serialises_to_names(&PacketClass::ALL, PacketClass::name);
        serialises_to_names(&ParseError::ALL, ParseError::name);
        serialises_to_names(&Counter::ALL, Counter::name);
    }

    #[test]
    fn from_index_inverts_all() {
        for (i, kind) in DetectionKind::ALL.into_iter().enumerate() {
            assert_eq!(DetectionKind::from_index(i as u32), Some(kind));
        }
        assert_eq!(
            DetectionKind::from_index(DetectionKind::ALL.len() as u32),
            None
        );
        for (i, reason) in BlockReason::ALL.into_iter().enumerate() {
            assert_eq!(BlockReason::from_index(i as u32), Some(reason));
        }
        assert_eq!(BlockReason::from_index(BlockReason::ALL.len() as u32), None);
        assert_eq!(PacketClass::from_index(4), Some(PacketClass::TcpMaimon));
        assert_eq!(Counter::from_index(u32::MAX), None);
    }
}
