//! Schema evolution of `ALTER TABLE`: Iceberg's rules, checked before anything is committed.
//! A column is known by its field id, so a rename or a widening rewrites no file, and files
//! written before a column was added read it as NULL.

use std::sync::Arc;

use arrow_schema::{Field, Schema as ArrowSchema};
use datafusion::sql::sqlparser::ast::{ColumnOption, DataType};
use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use crate::ddl::{arrow_type, iceberg_schema, sql_type};
use crate::error::{Result, SqlError};
use crate::statement::ColumnChange;

/// The commit that applies `change` to `table` (named `name` in errors): a new current schema, on condition that the
/// schema and the last column id are still those read. `None` when nothing changes (dropping
/// a missing column `IF EXISTS`, setting a column's own type). `primary_key` columns (of a
/// keyed table) can be neither renamed nor dropped.
pub fn evolve(
    table: &Table,
    name: &str,
    change: &ColumnChange,
    primary_key: &[String],
) -> Result<Option<(Vec<TableRequirement>, Vec<TableUpdate>)>> {
    let metadata = table.metadata();
    let current = metadata.current_schema();
    let mut fields: Vec<NestedFieldRef> = current.as_struct().fields().to_vec();
    let mut last_id = metadata.last_column_id();
    let position = |fields: &[NestedFieldRef], name: &str| fields.iter().position(|f| f.name == name);
    let missing = |column: &str| SqlError::invalid(format!("table {name} has no column {column}"));
    match change {
        ColumnChange::Add(columns) => {
            for column in columns {
                let name = column.name.value.clone();
                if position(&fields, &name).is_some() {
                    return Err(SqlError::invalid(format!("column {name} already exists")));
                }
                if column.options.iter().any(|o| matches!(o.option, ColumnOption::NotNull)) {
                    return Err(SqlError::invalid(format!(
                        "cannot add {name} as NOT NULL: the rows already written have no value for it"
                    )));
                }
                last_id += 1;
                let ty = iceberg_type(&name, &column.data_type)?;
                fields.push(Arc::new(NestedField::optional(last_id, name, ty)));
            }
        }
        ColumnChange::Rename { from, to } => {
            let i = position(&fields, from).ok_or_else(|| missing(from))?;
            if position(&fields, to).is_some() {
                return Err(SqlError::invalid(format!("column {to} already exists")));
            }
            if primary_key.contains(from) {
                return Err(SqlError::invalid(format!("cannot rename {from}: it is part of the primary key")));
            }
            let mut field = (*fields[i]).clone();
            field.name = to.clone();
            fields[i] = Arc::new(field);
        }
        ColumnChange::Drop { column, if_exists } => {
            let Some(i) = position(&fields, column) else {
                return if *if_exists { Ok(None) } else { Err(missing(column)) };
            };
            let id = fields[i].id;
            if primary_key.contains(column) || current.identifier_field_ids().any(|f| f == id) {
                return Err(SqlError::invalid(format!("cannot drop {column}: it is part of the primary key")));
            }
            if metadata.default_partition_spec().fields().iter().any(|f| f.source_id == id) {
                return Err(SqlError::invalid(format!("cannot drop {column}: the table is partitioned by it")));
            }
            if fields.len() == 1 {
                return Err(SqlError::invalid(format!("cannot drop {column}: it is the table's only column")));
            }
            fields.remove(i);
        }
        ColumnChange::SetType { column, data_type } => {
            let i = position(&fields, column).ok_or_else(|| missing(column))?;
            let to = iceberg_type(column, data_type)?;
            let from = &fields[i].field_type;
            if **from == to {
                return Ok(None);
            }
            if !widens(from, &to) {
                return Err(SqlError::invalid(format!(
                    "cannot change {column} from {} to {}: Iceberg widens INT to BIGINT, FLOAT to DOUBLE and a decimal's precision",
                    sql_type(from),
                    sql_type(&to)
                )));
            }
            let mut field = (*fields[i]).clone();
            field.field_type = Box::new(to);
            fields[i] = Arc::new(field);
        }
    }
    let schema_id = metadata.schemas_iter().map(|s| s.schema_id()).max().unwrap_or(0) + 1;
    let schema = Schema::builder()
        .with_schema_id(schema_id)
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()?;
    let requirements = vec![
        TableRequirement::CurrentSchemaIdMatch { current_schema_id: current.schema_id() },
        TableRequirement::LastAssignedFieldIdMatch { last_assigned_field_id: metadata.last_column_id() },
    ];
    let updates = vec![TableUpdate::AddSchema { schema }, TableUpdate::SetCurrentSchema { schema_id: -1 }];
    Ok(Some((requirements, updates)))
}

/// The Iceberg type of a column declared `name data_type`, as `CREATE TABLE` would make it.
fn iceberg_type(name: &str, data_type: &DataType) -> Result<Type> {
    let arrow = ArrowSchema::new(vec![Field::new(name, arrow_type(data_type)?, true)]);
    let schema = iceberg_schema(&arrow)?;
    let field = schema.as_struct().fields().first().ok_or_else(|| SqlError::invalid(format!("no type for {name}")))?;
    Ok((*field.field_type).clone())
}

/// Iceberg's type promotions.
fn widens(from: &Type, to: &Type) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (Type::Primitive(from), Type::Primitive(to)) => match (from, to) {
            (P::Int, P::Long) | (P::Float, P::Double) => true,
            (P::Decimal { precision: p, scale: s }, P::Decimal { precision: q, scale: t }) => s == t && q >= p,
            _ => false,
        },
        _ => false,
    }
}
