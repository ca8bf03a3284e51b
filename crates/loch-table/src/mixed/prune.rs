//! What a filter on a keyed table lets a merged read skip. Rows of base and insert files may be
//! filtered by anything; delete rows only by conjuncts on key columns and identity-partition
//! columns, which a delete shares with every row it removes — filtering them by another column
//! would let a removed row back in. A filter pinning every key column to a few values also
//! names the buckets that can hold those keys, so files of other buckets are skipped.

use std::collections::HashSet;

use iceberg::expr::{Bind, BoundPredicate, Predicate, PredicateOperator};
use iceberg::spec::{Datum, PrimitiveLiteral, PrimitiveType, SchemaRef, Transform};

use super::key_hash::{JavaValue, key_hash};
use super::tree::TreeNode;
use crate::error::{Result, TableError};

/// The most key combinations bucket pruning enumerates; a wider filter reads every bucket.
const MAX_KEYS: usize = 4096;

/// A merged read's filter, split by what it may be applied to.
#[derive(Debug, Clone, Default)]
pub struct MergeFilter {
    /// The whole filter, for base and insert rows.
    pub rows: Option<Predicate>,
    /// Its conjuncts on key and identity-partition columns only, for delete rows.
    pub deletes: Option<Predicate>,
    /// Hashes of every key the filter allows, when it pins each key column to a few values.
    key_hashes: Option<HashSet<i32>>,
}

impl MergeFilter {
    /// Splits `filter` on a table of `schema` keyed by `primary_key`, whose partition specs
    /// identity-partition `identity` (source column names); an error names a filter that does
    /// not fit the schema.
    pub fn new(
        filter: Option<&Predicate>,
        schema: &SchemaRef,
        primary_key: &[String],
        identity: &[String],
    ) -> Result<Self> {
        let Some(filter) = filter else { return Ok(Self::default()) };
        filter.bind(schema.clone(), true).map_err(|e| TableError::Invalid(format!("the filter does not fit: {e}")))?;
        let mut conjuncts = Vec::new();
        split_and(filter, &mut conjuncts);
        let safe: Vec<Predicate> = conjuncts
            .into_iter()
            .filter(|c| {
                let mut columns = Vec::new();
                columns_of(c, &mut columns);
                columns.iter().all(|name| primary_key.contains(name) || identity.contains(name))
            })
            .cloned()
            .collect();
        let key_hashes = key_hashes(&safe, schema, primary_key)?;
        let deletes = safe.into_iter().reduce(Predicate::and);
        Ok(Self { rows: Some(filter.clone()), deletes, key_hashes })
    }

    /// Whether a file of bucket `node` can hold a key the filter allows.
    pub fn holds(&self, node: TreeNode) -> bool {
        let Some(hashes) = &self.key_hashes else { return true };
        let buckets = node.mask().saturating_add(1);
        match u32::try_from(buckets) {
            Ok(buckets) if buckets.is_power_of_two() => {
                hashes.iter().any(|h| TreeNode::of_hash(*h, buckets).is_ok_and(|n| n == node))
            }
            _ => true,
        }
    }
}

fn split_and<'a>(predicate: &'a Predicate, out: &mut Vec<&'a Predicate>) {
    match predicate {
        Predicate::And(and) => and.inputs().into_iter().for_each(|p| split_and(p, out)),
        other => out.push(other),
    }
}

fn columns_of(predicate: &Predicate, out: &mut Vec<String>) {
    match predicate {
        Predicate::AlwaysTrue | Predicate::AlwaysFalse => {}
        Predicate::And(e) | Predicate::Or(e) => e.inputs().into_iter().for_each(|p| columns_of(p, out)),
        Predicate::Not(e) => e.inputs().into_iter().for_each(|p| columns_of(p, out)),
        Predicate::Unary(e) => out.push(e.term().name().to_string()),
        Predicate::Binary(e) => out.push(e.term().name().to_string()),
        Predicate::Set(e) => out.push(e.term().name().to_string()),
    }
}

/// Source columns of `schema` every one of `specs` partitions by identity.
pub fn identity_columns<'a>(
    schema: &iceberg::spec::Schema,
    specs: impl IntoIterator<Item = &'a iceberg::spec::PartitionSpecRef>,
) -> Vec<String> {
    let mut sets = specs.into_iter().map(|spec| {
        spec.fields()
            .iter()
            .filter(|f| f.transform == Transform::Identity)
            .filter_map(|f| schema.name_by_field_id(f.source_id).map(str::to_string))
            .collect::<HashSet<String>>()
    });
    let first = sets.next().unwrap_or_default();
    let common = sets.fold(first, |acc, s| acc.intersection(&s).cloned().collect());
    let mut columns: Vec<String> = common.into_iter().collect();
    columns.sort();
    columns
}

/// The hashes of every key `conjuncts` allow, if they pin each key column to at most a few
/// values (`=` or `IN`).
fn key_hashes(conjuncts: &[Predicate], schema: &SchemaRef, primary_key: &[String]) -> Result<Option<HashSet<i32>>> {
    let mut values: Vec<Option<Vec<JavaValue>>> = vec![None; primary_key.len()];
    for conjunct in conjuncts {
        let bound = conjunct
            .bind(schema.clone(), true)
            .map_err(|e| TableError::Invalid(format!("the filter does not fit: {e}")))?;
        let (name, datums): (&str, Vec<&Datum>) = match &bound {
            BoundPredicate::Binary(e) if e.op() == PredicateOperator::Eq => (&e.term().field().name, vec![e.literal()]),
            BoundPredicate::Set(e) if e.op() == PredicateOperator::In => {
                (&e.term().field().name, e.literals().iter().collect())
            }
            _ => continue,
        };
        let Some(position) = primary_key.iter().position(|k| k == name) else { continue };
        let java: Option<Vec<JavaValue>> = datums.into_iter().map(java_value).collect();
        // The narrowest of several conjuncts on one column is as good as their intersection.
        if let Some(java) = java
            && values[position].as_ref().is_none_or(|v| v.len() > java.len())
        {
            values[position] = Some(java);
        }
    }
    let Some(values) = values.into_iter().collect::<Option<Vec<_>>>() else { return Ok(None) };
    if values.iter().map(Vec::len).try_fold(1usize, |acc, n| acc.checked_mul(n)).is_none_or(|n| n > MAX_KEYS) {
        return Ok(None);
    }
    let mut keys: Vec<Vec<JavaValue>> = vec![Vec::new()];
    for column in values {
        keys = keys
            .into_iter()
            .flat_map(|prefix| {
                column.iter().map(move |v| {
                    let mut key = prefix.clone();
                    key.push(v.clone());
                    key
                })
            })
            .collect();
    }
    Ok(Some(keys.iter().map(|k| key_hash(k)).collect()))
}

/// A literal as Java holds it when hashing keys (see `key::java_value` for Arrow values).
fn java_value(datum: &Datum) -> Option<JavaValue> {
    Some(match (datum.literal(), datum.data_type()) {
        (PrimitiveLiteral::Boolean(b), _) => JavaValue::Boolean(*b),
        (PrimitiveLiteral::Int(i), _) => JavaValue::Int(*i),
        (PrimitiveLiteral::Long(l), _) => JavaValue::Long(*l),
        (PrimitiveLiteral::Float(f), _) => JavaValue::Float(f.0),
        (PrimitiveLiteral::Double(d), _) => JavaValue::Double(d.0),
        (PrimitiveLiteral::String(s), _) => JavaValue::String(s.clone()),
        (PrimitiveLiteral::Binary(b), _) => JavaValue::Bytes(b.clone()),
        (PrimitiveLiteral::Int128(v), PrimitiveType::Decimal { scale, .. }) => {
            JavaValue::Decimal { unscaled: *v, scale: i32::try_from(*scale).ok()? }
        }
        (PrimitiveLiteral::UInt128(u), PrimitiveType::Uuid) => JavaValue::Uuid(u.to_be_bytes()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iceberg::expr::Reference;
    use iceberg::spec::{NestedField, Schema, Type};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(
            Schema::builder()
                .with_fields(vec![
                    NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                    NestedField::required(2, "region", Type::Primitive(PrimitiveType::String)).into(),
                    NestedField::optional(3, "v", Type::Primitive(PrimitiveType::String)).into(),
                ])
                .build()
                .unwrap(),
        )
    }

    fn split(filter: Predicate) -> MergeFilter {
        MergeFilter::new(Some(&filter), &schema(), &["id".into()], &["region".into()]).unwrap()
    }

    #[test]
    fn deletes_are_filtered_only_by_key_and_identity_partition_columns() {
        let id = Reference::new("id").equal_to(Datum::long(5));
        let region = Reference::new("region").equal_to(Datum::string("eu"));
        let value = Reference::new("v").equal_to(Datum::string("x"));
        let filter = split(id.clone().and(value.clone()).and(region.clone()));
        assert_eq!(filter.deletes, Some(id.clone().and(region)));
        assert!(split(value.clone()).deletes.is_none());
        // An OR reaching a non-key column is not safe as a whole.
        assert!(split(id.or(value)).deletes.is_none());
    }

    #[test]
    fn pinned_keys_name_their_buckets() {
        let hash = key_hash(&[JavaValue::Long(5)]);
        let bucket = TreeNode::of_hash(hash, 4).unwrap();
        let filter = split(Reference::new("id").equal_to(Datum::long(5)));
        assert!(filter.holds(bucket) && filter.holds(TreeNode::ROOT));
        let others: Vec<TreeNode> = (0..4).map(|i| TreeNode::new(3, i).unwrap()).filter(|n| *n != bucket).collect();
        assert!(others.iter().all(|n| !filter.holds(*n)));
        // A range pins nothing: every bucket is read.
        let range = split(Reference::new("id").greater_than(Datum::long(5)));
        assert!(others.iter().all(|n| range.holds(*n)));
        // An int literal on a long key is bound to a long first.
        let widened = split(Reference::new("id").is_in([Datum::int(5), Datum::int(6)]));
        assert!(widened.holds(bucket));
    }

    #[test]
    fn a_filter_on_a_missing_column_is_an_error() {
        let bad = Reference::new("nope").equal_to(Datum::long(1));
        assert!(MergeFilter::new(Some(&bad), &schema(), &["id".into()], &[]).is_err());
    }
}
