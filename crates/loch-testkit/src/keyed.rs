//! Keyed-table test helpers: a small table (`id` key, `region`, `v`), an in-memory model of
//! its rows, random writers whose changes the model follows, and CDC replay.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use loch_table::mixed::change::{ChangeOp, ChangeOptions, ChangeWriter};

use crate::data::arrow_schema;

/// A row's region and value.
pub type Row = (i64, Option<String>);
/// id → row.
pub type Model = BTreeMap<i64, Row>;

/// The test table's schema: `id` (the key), `region` (partitioned by, in some tests), `v`.
pub fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(2, "region", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(3, "v", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()
        .expect("a valid schema")
}

/// The region of a key.
pub fn region(id: i64) -> i64 {
    id.rem_euclid(3)
}

/// Rows `(id, region, v)` as a batch of `table`'s schema.
pub fn batch(table: &iceberg::table::Table, rows: &[(i64, i64, Option<String>)]) -> RecordBatch {
    RecordBatch::try_new(
        arrow_schema(table),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2.clone()))),
        ],
    )
    .expect("rows of the schema")
}

/// The model of rows read; panics when a key is read twice.
pub fn model_of(batches: &[RecordBatch]) -> Model {
    let mut model = Model::new();
    for b in batches {
        let (ids, regions, values) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let value = (!values.is_null(i)).then(|| values.value(i).to_string());
            assert!(model.insert(ids.value(i), (regions.value(i), value)).is_none(), "key {} read twice", ids.value(i));
        }
    }
    model
}

/// Applies a CDC stream to `model`; the transactions of its rows in order.
pub fn replay(model: &mut Model, batches: &[RecordBatch]) -> Vec<i64> {
    let mut transactions = Vec::new();
    for b in batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let regions = b.column(1).as_primitive::<Int64Type>();
        let values = b.column(2).as_string::<i32>();
        let actions = b.column_by_name("_change_action").expect("_change_action").as_string::<i32>();
        let txids = b.column_by_name("_transaction_id").expect("_transaction_id").as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            transactions.push(txids.value(i));
            match actions.value(i) {
                "INSERT" | "UPDATE_AFTER" => {
                    let value = (!values.is_null(i)).then(|| values.value(i).to_string());
                    model.insert(ids.value(i), (regions.value(i), value));
                }
                "DELETE" | "UPDATE_BEFORE" => {
                    model.remove(&ids.value(i));
                }
                other => panic!("unknown action {other}"),
            }
        }
    }
    transactions
}

/// A deterministic random source (seeded, so a failure names its seed).
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// A writer of random changes to keys of its own (`id ≡ lane mod 2`), plain or upserting, that
/// knows what its pending changes do to the table.
pub struct RandomWriter {
    /// The change writer holding the pending transaction.
    pub writer: ChangeWriter,
    lane: usize,
    upsert: bool,
    view: Model,
    effects: Vec<(i64, Option<Row>)>,
}

impl RandomWriter {
    /// Writer `lane` (0 or 1) of `change` keyed by `id`, starting from `model`.
    pub fn new(change: &iceberg::table::Table, lane: usize, upsert: bool, model: &Model) -> Self {
        let options = ChangeOptions { buckets: 4, upsert, ..ChangeOptions::default() };
        let writer = ChangeWriter::new(change, &["id".to_string()], options).expect("a change writer");
        Self { writer, lane, upsert, view: model.clone(), effects: Vec::new() }
    }

    /// Buffers `n` random changes (inserts, updates, deletes, or upserts); the operations written.
    pub fn write_random(&mut self, change: &iceberg::table::Table, rng: &mut Lcg, n: usize, tag: &str) -> usize {
        let mut rows = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..n {
            let id = (rng.next(100) as i64) * 2 + self.lane as i64;
            let value = Some(format!("w{}{tag}r{}", self.lane, rng.next(1_000_000)));
            let current = self.view.get(&id).cloned();
            let roll = rng.next(4);
            let new = (region(id), value.clone());
            match current {
                _ if self.upsert && roll < 2 => {
                    rows.push((id, region(id), value));
                    ops.push(ChangeOp::Insert);
                    self.set(id, Some(new));
                }
                None => {
                    rows.push((id, region(id), value));
                    ops.push(ChangeOp::Insert);
                    self.set(id, Some(new));
                }
                Some(old) if roll < 2 => {
                    rows.push((id, old.0, old.1));
                    ops.push(ChangeOp::UpdateBefore);
                    rows.push((id, region(id), value));
                    ops.push(ChangeOp::UpdateAfter);
                    self.set(id, Some(new));
                }
                Some(old) => {
                    rows.push((id, old.0, old.1));
                    ops.push(ChangeOp::Delete);
                    self.set(id, None);
                }
            }
        }
        self.writer.write(&batch(change, &rows), &ops).expect("buffered changes");
        ops.len()
    }

    fn set(&mut self, id: i64, row: Option<Row>) {
        match &row {
            Some(row) => self.view.insert(id, row.clone()),
            None => self.view.remove(&id),
        };
        self.effects.push((id, row));
    }

    /// True when changes are buffered.
    pub fn pending(&self) -> bool {
        !self.effects.is_empty()
    }

    /// Applies the pending changes to `model` (once their transaction committed).
    pub fn committed(&mut self, model: &mut Model) {
        for (id, effect) in std::mem::take(&mut self.effects) {
            match effect {
                Some(row) => model.insert(id, row),
                None => model.remove(&id),
            };
        }
    }
}
