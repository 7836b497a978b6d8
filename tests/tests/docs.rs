//! The docs follow the code: `docs/configuration.md` holds the table of kinds exactly as
//! `kinds::markdown_table` generates it (and so does `docs/detections.md` when it has the
//! markers) and a section per kind, and documents every configuration key once, as the first
//! cell of a table row; `docs/detections.md` holds the scanner trait table exactly as
//! `fingerprints::markdown_table` generates it.
//!
//! The keys come from the serde definitions of the configuration file (`FileConfig`, the
//! `[crowdsec]` and `[web]` sections, a `block_lists` table entry), not from a list kept here.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use scanwatch::config::{FileConfig, ListTable};
use scanwatch_common::kinds::markdown_table;
use serde::{
    Deserialize,
    de::{self, Visitor, value::Error},
    forward_to_deserialize_any,
};

const BEGIN: &str = "<!-- kinds:begin -->";
const END: &str = "<!-- kinds:end -->";

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .join("docs")
}

/// A page of the docs.
fn page(name: &str) -> String {
    let path = docs_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A deserializer that answers a struct's request with the names of its fields (the
/// `fields` serde's derive passes to `deserialize_struct`), and nothing else.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("only the field names were wanted"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("not a struct"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The field names of a struct deserialized by serde's derive.
fn fields<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = Vec::new();
    let _ = T::deserialize(FieldNames(&mut names));
    assert!(
        !names.is_empty(),
        "{} is not a struct",
        std::any::type_name::<T>()
    );
    names
}

/// Every configuration key as the docs write it: top-level keys, then section keys
/// (`crowdsec.lapi_url`, `web.ports`, `block_lists[].path`, `thresholds.distributed_hosts`).
fn config_keys() -> Vec<String> {
    let mut keys: Vec<String> = fields::<FileConfig>()
        .into_iter()
        .map(String::from)
        .collect();
    for (prefix, names) in [
        ("crowdsec.", fields::<scanwatch::fleet::settings::Section>()),
        ("web.", fields::<scanwatch::finding::web::Section>()),
        ("block_lists[].", fields::<ListTable>()),
    ] {
        keys.extend(names.into_iter().map(|f| format!("{prefix}{f}")));
    }
    keys.push("thresholds.distributed_hosts".into());
    keys
}

/// The lines between the kinds markers, with a newline each; `None` without the markers.
fn kinds_block(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines.iter().position(|l| l.trim() == BEGIN)?;
    let end = lines[begin..].iter().position(|l| l.trim() == END)? + begin;
    Some(
        lines[begin + 1..end]
            .iter()
            .flat_map(|l| [*l, "\n"])
            .collect(),
    )
}

fn check_kinds_table(name: &str, text: &str) {
    let expected = markdown_table();
    let found = kinds_block(text).unwrap_or_default();
    assert!(
        found == expected,
        "docs/{name}: the table between {BEGIN} and {END} is not the table of kinds; paste \
         this block there:\n\n{BEGIN}\n{expected}{END}\n"
    );
}

#[test]
fn configuration_doc_holds_the_table_of_kinds() {
    let text = page("configuration.md");
    assert!(
        kinds_block(&text).is_some(),
        "docs/configuration.md has no {BEGIN} … {END} block"
    );
    check_kinds_table("configuration.md", &text);
}

#[test]
fn detections_doc_holds_the_trait_table() {
    const TRAITS_BEGIN: &str = "<!-- traits:begin -->";
    const TRAITS_END: &str = "<!-- traits:end -->";
    let text = page("detections.md");
    let expected = scanwatch_common::fingerprints::markdown_table();
    let found = text
        .split_once(TRAITS_BEGIN)
        .and_then(|(_, rest)| rest.split_once(TRAITS_END))
        .map(|(block, _)| block.trim());
    assert!(
        found == Some(expected.trim()),
        "docs/detections.md: the block between {TRAITS_BEGIN} and {TRAITS_END} is not the \
         trait table; paste this block there:\n\n{TRAITS_BEGIN}\n{expected}{TRAITS_END}\n"
    );
}

#[test]
fn detections_doc_holds_the_table_of_kinds_if_it_has_the_markers() {
    let text = page("detections.md");
    if kinds_block(&text).is_some() {
        check_kinds_table("detections.md", &text);
    }
}

#[test]
fn configuration_doc_documents_every_key_once() {
    let text = page("configuration.md");
    let keys = config_keys();
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_kinds = false;
    for line in text.lines() {
        match line.trim() {
            BEGIN => in_kinds = true,
            END => in_kinds = false,
            _ => {}
        }
        if in_kinds {
            continue;
        }
        let Some(first) = line
            .trim()
            .strip_prefix('|')
            .and_then(|l| l.split('|').next())
        else {
            continue;
        };
        let first = first.trim();
        if let Some(key) = first.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
            *rows.entry(key.to_owned()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !rows.contains_key(*k)).collect();
    let repeated: Vec<&String> = rows
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    let unknown: Vec<&String> = rows.keys().filter(|k| !keys.contains(k)).collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && unknown.is_empty(),
        "docs/configuration.md: every key once as the first cell of a table row, in backticks. \
         Missing: {missing:?}; more than once: {repeated:?}; not a key: {unknown:?}"
    );
}

#[test]
fn detections_doc_has_a_section_per_kind() {
    let text = page("detections.md");
    let missing: Vec<&str> = scanwatch_common::kinds::KINDS
        .iter()
        .map(|spec| spec.name)
        .filter(|name| !text.lines().any(|l| l.trim() == format!("## `{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/detections.md has no `## `kind`` section for {missing:?}"
    );
}

#[test]
fn config_keys_come_from_the_serde_definitions() {
    let keys = config_keys();
    for key in [
        "interfaces",
        "long_thresholds",
        "crowdsec",
        "crowdsec.lapi_url",
        "web.ports",
        "block_lists[].path",
        "thresholds.distributed_hosts",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
}

#[test]
fn kinds_blocked_on_opt_in_name_a_configuration_key() {
    use scanwatch_common::kinds::KINDS;
    let keys = config_keys();
    for spec in &KINDS {
        if let Some(key) = spec.block.opt_in() {
            assert!(keys.iter().any(|k| k == key), "{}: {key}", spec.name);
        }
    }
}
