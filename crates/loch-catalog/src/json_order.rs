//! Metadata JSON with its lists in one stable order.
//!
//! iceberg-rust keeps snapshots, schemas, specs and statistics in hash maps, so its JSON lists
//! them in a different order every time it serializes. Loch writes them sorted (by id, snapshots
//! by sequence number and time), so a metadata file and every answer built from it list them in
//! one order. The reordering moves raw JSON text around and reads only the ids of each element:
//! no JSON tree is built, because a commit serializes the whole (growing) metadata.

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Lists of an object and the integer fields their elements are ordered by.
pub(crate) type Lists = &'static [(&'static str, &'static [&'static str])];

/// The lists of table metadata.
pub(crate) const TABLE_LISTS: Lists = &[
    ("schemas", &["schema-id"]),
    ("partition-specs", &["spec-id"]),
    ("sort-orders", &["order-id"]),
    ("snapshots", &["sequence-number", "timestamp-ms", "snapshot-id"]),
    ("statistics", &["snapshot-id"]),
    ("partition-statistics", &["snapshot-id"]),
];

/// The lists of view metadata.
pub(crate) const VIEW_LISTS: Lists = &[("schemas", &["schema-id"]), ("versions", &["version-id"])];

/// Serializes `value` (a JSON object) with `lists` sorted; other fields keep their order.
///
/// The text is read once to find the fields (lists are split into their elements on the way),
/// each list element once more for its ids, and the result is assembled from the raw pieces.
pub(crate) fn to_ordered_json<T: Serialize>(value: &T, lists: Lists) -> serde_json::Result<Box<RawValue>> {
    let text = serde_json::to_string(value)?;
    let mut fields: Fields<'_> = {
        let mut deserializer = serde_json::Deserializer::from_str(&text);
        let fields = FieldsSeed(lists).deserialize(&mut deserializer)?;
        deserializer.end()?;
        fields
    };
    for (key, field) in &mut fields.0 {
        if let (Field::List(items), Some((_, order))) = (field, lists.iter().find(|(name, _)| name == key)) {
            let mut keyed = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                let ids: Ids = serde_json::from_str(item.get()).unwrap_or_default();
                keyed.push((order.iter().map(|f| ids.get(f)).collect::<Vec<i64>>(), item));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            items.extend(keyed.into_iter().map(|(_, item)| item));
        }
    }
    // Serializing borrowed raw pieces copies them; nothing is parsed again.
    serde_json::value::to_raw_value(&fields)
}

/// `json` (an object) with the elements of `lists` kept only where `keep(list, element ids)`
/// holds; everything else as it was. Like [`to_ordered_json`], no JSON tree is built.
pub(crate) fn retain_in_lists(
    json: &str,
    lists: Lists,
    mut keep: impl FnMut(&str, &Ids) -> bool,
) -> serde_json::Result<Box<RawValue>> {
    let mut fields: Fields<'_> = {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let fields = FieldsSeed(lists).deserialize(&mut deserializer)?;
        deserializer.end()?;
        fields
    };
    for (key, field) in &mut fields.0 {
        if let Field::List(items) = field {
            let mut kept = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                let ids: Ids = serde_json::from_str(item.get())?;
                if keep(key, &ids) {
                    kept.push(item);
                }
            }
            *items = kept;
        }
    }
    serde_json::value::to_raw_value(&fields)
}

/// A field of the top-level object: raw, or (a list to sort) its raw elements.
enum Field<'a> {
    Raw(&'a RawValue),
    List(Vec<&'a RawValue>),
}

/// The fields of a JSON object, in order.
struct Fields<'a>(Vec<(String, Field<'a>)>);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, field) in &self.0 {
            match field {
                Field::Raw(raw) => map.serialize_entry(key, raw)?,
                Field::List(items) => map.serialize_entry(key, items)?,
            }
        }
        map.end()
    }
}

/// Reads [`Fields`], splitting the values of `lists` into their elements.
struct FieldsSeed(Lists);

impl<'de> serde::de::DeserializeSeed<'de> for FieldsSeed {
    type Value = Fields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct FieldsVisitor(Lists);
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let field = if self.0.iter().any(|(name, _)| *name == key) {
                        match map.next_value::<Option<Vec<&'de RawValue>>>()? {
                            Some(items) => Field::List(items),
                            None => Field::Raw(RawValue::NULL),
                        }
                    } else {
                        Field::Raw(map.next_value::<&'de RawValue>()?)
                    };
                    fields.push((key, field));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor(self.0))
    }
}

/// The ids an element of a metadata list may be ordered by.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Ids {
    schema_id: Option<i64>,
    spec_id: Option<i64>,
    order_id: Option<i64>,
    sequence_number: Option<i64>,
    timestamp_ms: Option<i64>,
    snapshot_id: Option<i64>,
    version_id: Option<i64>,
}

impl Ids {
    /// The id `field` (`snapshot-id`, `schema-id`, ...), 0 when the element has none.
    pub(crate) fn get(&self, field: &str) -> i64 {
        let value = match field {
            "schema-id" => self.schema_id,
            "spec-id" => self.spec_id,
            "order-id" => self.order_id,
            "sequence-number" => self.sequence_number,
            "timestamp-ms" => self.timestamp_ms,
            "snapshot-id" => self.snapshot_id,
            "version-id" => self.version_id,
            _ => None,
        };
        value.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_ordered_and_everything_else_is_kept() {
        let value = serde_json::json!({
            "format-version": 2,
            "snapshots": [
                {"snapshot-id": 9, "sequence-number": 3, "timestamp-ms": 30, "summary": {"a": "b"}},
                {"snapshot-id": 7, "sequence-number": 1, "timestamp-ms": 10},
                {"snapshot-id": 8, "sequence-number": 2, "timestamp-ms": 20},
            ],
            "schemas": [{"schema-id": 1, "fields": []}, {"schema-id": 0, "fields": [{"id": 1, "name": "x\"y"}]}],
            "properties": {"k": "v"},
        });
        let json = to_ordered_json(&value, TABLE_LISTS).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(json.get()).unwrap();
        let ids = |list: &str, field: &str| {
            parsed[list].as_array().unwrap().iter().map(|s| s[field].as_i64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(ids("snapshots", "snapshot-id"), vec![7, 8, 9]);
        assert_eq!(ids("schemas", "schema-id"), vec![0, 1]);
        assert_eq!(parsed["schemas"][0]["fields"][0]["name"], "x\"y");
        let mut unordered = parsed.clone();
        unordered["snapshots"] = value["snapshots"].clone();
        unordered["schemas"] = value["schemas"].clone();
        assert_eq!(unordered, value, "nothing else changed");
    }

    #[test]
    fn retained_elements_are_the_kept_ones_and_the_rest_is_as_it_was() {
        let json = r#"{"b":1,"snapshots":[{"snapshot-id":1,"x":[1]},{"snapshot-id":2},{"y":3}],"a":{"k":"v"},"statistics":[]}"#;
        let kept =
            retain_in_lists(json, TABLE_LISTS, |list, ids| list == "snapshots" && ids.get("snapshot-id") == 2).unwrap();
        assert_eq!(kept.get(), r#"{"b":1,"snapshots":[{"snapshot-id":2}],"a":{"k":"v"},"statistics":[]}"#);
    }
}
