//! Checking commit requirements, worded as Iceberg's reference catalog words them
//! (`UpdateRequirement.java`): clients and the compatibility kit match the messages.

use std::collections::HashMap;

use iceberg::TableRequirement;
use iceberg::spec::TableMetadata;
use serde::Deserialize;

use crate::metadata::CachedMetadata;

/// Checks one requirement against the table's current metadata (`None`: the table does not
/// exist); `Err` holds the message of the failed requirement.
pub(crate) fn check(requirement: &TableRequirement, current: Option<&CachedMetadata>) -> Result<(), String> {
    check_metadata(requirement, current.map(|c| (&*c.metadata, c.json.get())))
}

/// [`check`] on parsed metadata and its JSON (read only to word a failed ref requirement).
fn check_metadata(requirement: &TableRequirement, current: Option<(&TableMetadata, &str)>) -> Result<(), String> {
    let Some((metadata, json)) = current else {
        return match requirement {
            TableRequirement::NotExist => Ok(()),
            _ => Err("Requirement failed: table does not exist".into()),
        };
    };
    let mismatch = |what: &str, expected: i64, actual: i64| {
        if expected == actual {
            Ok(())
        } else {
            Err(format!("Requirement failed: {what} changed: expected id {expected} != {actual}"))
        }
    };
    match requirement {
        TableRequirement::NotExist => Err("Requirement failed: table already exists".into()),
        TableRequirement::UuidMatch { uuid } if *uuid != metadata.uuid() => {
            Err(format!("Requirement failed: UUID does not match: expected {} != {uuid}", metadata.uuid()))
        }
        TableRequirement::UuidMatch { .. } => Ok(()),
        TableRequirement::RefSnapshotIdMatch { r#ref, snapshot_id } => {
            let actual = metadata.snapshot_for_ref(r#ref).map(|s| s.snapshot_id());
            match (actual, snapshot_id) {
                (Some(_), None) => {
                    Err(format!("Requirement failed: {} {ref} was created concurrently", ref_kind(json, r#ref)))
                }
                (Some(actual), Some(expected)) if actual != *expected => Err(format!(
                    "Requirement failed: {} {ref} has changed: expected id {expected} != {actual}",
                    ref_kind(json, r#ref)
                )),
                (None, Some(expected)) => {
                    Err(format!("Requirement failed: branch or tag {ref} is missing, expected {expected}"))
                }
                _ => Ok(()),
            }
        }
        TableRequirement::LastAssignedFieldIdMatch { last_assigned_field_id } => {
            mismatch("last assigned field id", i64::from(*last_assigned_field_id), i64::from(metadata.last_column_id()))
        }
        TableRequirement::CurrentSchemaIdMatch { current_schema_id } => {
            mismatch("current schema", i64::from(*current_schema_id), i64::from(metadata.current_schema_id()))
        }
        TableRequirement::LastAssignedPartitionIdMatch { last_assigned_partition_id } => mismatch(
            "last assigned partition id",
            i64::from(*last_assigned_partition_id),
            i64::from(metadata.last_partition_id()),
        ),
        TableRequirement::DefaultSpecIdMatch { default_spec_id } => mismatch(
            "default partition spec",
            i64::from(*default_spec_id),
            i64::from(metadata.default_partition_spec_id()),
        ),
        TableRequirement::DefaultSortOrderIdMatch { default_sort_order_id } => {
            mismatch("default sort order", *default_sort_order_id, metadata.default_sort_order_id())
        }
    }
}

/// `branch` or `tag`, read from the metadata JSON (iceberg-rust keeps refs private).
fn ref_kind(json: &str, name: &str) -> String {
    #[derive(Deserialize)]
    struct Refs {
        #[serde(default)]
        refs: HashMap<String, Ref>,
    }
    #[derive(Deserialize)]
    struct Ref {
        r#type: String,
    }
    serde_json::from_str::<Refs>(json)
        .ok()
        .and_then(|r| r.refs.get(name).map(|r| r.r#type.clone()))
        .unwrap_or_else(|| "branch or tag".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{
        NestedField, PrimitiveType, Schema, SortOrder, TableMetadataBuilder, Type, UnboundPartitionSpec,
    };

    fn metadata() -> TableMetadata {
        let schema = Schema::builder()
            .with_fields(vec![NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
            .build()
            .unwrap();
        TableMetadataBuilder::new(
            schema,
            UnboundPartitionSpec::builder().build(),
            SortOrder::unsorted_order(),
            "file:///wh/t".into(),
            iceberg::spec::FormatVersion::V2,
            Default::default(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }

    fn check(requirement: &TableRequirement, metadata: Option<&TableMetadata>) -> Result<(), String> {
        check_metadata(requirement, metadata.map(|m| (m, "{}")))
    }

    #[test]
    fn messages_follow_iceberg_s_wording() {
        let m = metadata();
        let uuid = uuid::Uuid::nil();
        let err = check(&TableRequirement::UuidMatch { uuid }, Some(&m)).unwrap_err();
        assert_eq!(err, format!("Requirement failed: UUID does not match: expected {} != {uuid}", m.uuid()));
        let err = check(&TableRequirement::CurrentSchemaIdMatch { current_schema_id: 3 }, Some(&m)).unwrap_err();
        assert_eq!(err, "Requirement failed: current schema changed: expected id 3 != 0");
        let err =
            check(&TableRequirement::LastAssignedFieldIdMatch { last_assigned_field_id: 5 }, Some(&m)).unwrap_err();
        assert_eq!(err, "Requirement failed: last assigned field id changed: expected id 5 != 1");
        assert!(
            check(&TableRequirement::NotExist, Some(&m))
                .unwrap_err()
                .starts_with("Requirement failed: table already exists")
        );
        assert!(check(&TableRequirement::NotExist, None).is_ok());
        let missing = TableRequirement::RefSnapshotIdMatch { r#ref: "main".into(), snapshot_id: Some(7) };
        assert_eq!(
            check(&missing, Some(&m)).unwrap_err(),
            "Requirement failed: branch or tag main is missing, expected 7"
        );
        let absent = TableRequirement::RefSnapshotIdMatch { r#ref: "main".into(), snapshot_id: None };
        assert!(check(&absent, Some(&m)).is_ok());
    }
}
