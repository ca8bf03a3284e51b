//! Table definitions between SQL and Iceberg: column types, partition transforms, and the
//! `CREATE TABLE` text `SHOW CREATE TABLE` prints back.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, DataType, ExactNumberInfo, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    TimezoneInfo, Value,
};
use iceberg::spec::{Schema, Transform, UnboundPartitionSpec};
use iceberg::table::Table;

use crate::error::{Result, SqlError};

/// The Arrow schema of declared columns (primary key columns are required).
pub fn arrow_schema(columns: &[ColumnDef], primary_key: &[String]) -> Result<ArrowSchema> {
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        let name = column.name.value.clone();
        if fields.iter().any(|f: &Field| f.name() == &name) {
            return Err(SqlError::invalid(format!("column {name} is declared twice")));
        }
        let not_null = column.options.iter().any(|o| matches!(o.option, ColumnOption::NotNull));
        let required = not_null || primary_key.contains(&name);
        fields.push(Field::new(name, arrow_type(&column.data_type)?, !required));
    }
    for key in primary_key {
        if !fields.iter().any(|f| f.name() == key) {
            return Err(SqlError::invalid(format!("primary key column {key} is not a column of the table")));
        }
    }
    Ok(ArrowSchema::new(fields))
}

/// Makes `primary_key` columns of `schema` required (a CTAS takes nullable columns from its query).
pub fn require_key(schema: &ArrowSchema, primary_key: &[String]) -> Result<ArrowSchema> {
    for key in primary_key {
        if schema.field_with_name(key).is_err() {
            return Err(SqlError::invalid(format!("primary key column {key} is not a column of the table")));
        }
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if primary_key.contains(f.name()) { f.with_nullable(false) } else { f }
        })
        .collect();
    Ok(ArrowSchema::new(fields))
}

/// The Iceberg schema of an Arrow schema, with fresh field ids.
pub fn iceberg_schema(schema: &ArrowSchema) -> Result<Schema> {
    // Iceberg stores timestamps in microseconds; DataFusion plans nanoseconds for literals.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = match f.data_type() {
                ArrowType::Timestamp(_, tz) => ArrowType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                ArrowType::Utf8View | ArrowType::LargeUtf8 => ArrowType::Utf8,
                ArrowType::BinaryView | ArrowType::LargeBinary => ArrowType::Binary,
                ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 | ArrowType::UInt16 => ArrowType::Int32,
                ArrowType::UInt32 => ArrowType::Int64,
                ArrowType::Float16 => ArrowType::Float32,
                other => other.clone(),
            };
            Field::new(f.name(), data_type, f.is_nullable())
        })
        .collect();
    Ok(iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&ArrowSchema::new(fields))?)
}

pub(crate) fn arrow_type(data_type: &DataType) -> Result<ArrowType> {
    Ok(match data_type {
        DataType::Boolean | DataType::Bool => ArrowType::Boolean,
        DataType::TinyInt(_) | DataType::SmallInt(_) | DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => {
            ArrowType::Int32
        }
        DataType::Int2(_) | DataType::Int16 | DataType::Int32 => ArrowType::Int32,
        DataType::BigInt(_) | DataType::Int8(_) | DataType::Int64 => ArrowType::Int64,
        DataType::Real | DataType::Float4 | DataType::Float32 => ArrowType::Float32,
        DataType::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => ArrowType::Float32,
        DataType::Float(_) | DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 | DataType::Float64 => {
            ArrowType::Float64
        }
        DataType::Decimal(info) | DataType::Numeric(info) | DataType::Dec(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (38, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            if !(1..=38).contains(&precision) || scale < 0 || scale as u64 > precision {
                return Err(SqlError::invalid(format!(
                    "invalid decimal({precision}, {scale}): precision 1-38, scale 0-precision"
                )));
            }
            ArrowType::Decimal128(precision as u8, scale as i8)
        }
        DataType::String(_)
        | DataType::Text
        | DataType::Varchar(_)
        | DataType::Char(_)
        | DataType::Character(_)
        | DataType::CharacterVarying(_)
        | DataType::CharVarying(_)
        | DataType::Nvarchar(_) => ArrowType::Utf8,
        DataType::Binary(_) | DataType::Varbinary(_) | DataType::Bytea | DataType::Blob(_) | DataType::Bytes(_) => {
            ArrowType::Binary
        }
        DataType::Uuid => ArrowType::FixedSizeBinary(16),
        DataType::Date => ArrowType::Date32,
        DataType::Time(_, _) => ArrowType::Time64(TimeUnit::Microsecond),
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")))
        }
        DataType::Timestamp(_, _) | DataType::TimestampNtz(_) | DataType::Datetime(_) => {
            ArrowType::Timestamp(TimeUnit::Microsecond, None)
        }
        DataType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamptz") => {
            ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")))
        }
        DataType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("long") => ArrowType::Int64,
        other => return Err(SqlError::invalid(format!("unsupported column type {other}"))),
    })
}

/// The partition spec of `PARTITIONED BY (...)`: `col`, `bucket(N, col)`, `truncate(W, col)`,
/// `year(col)`/`years`, `month(s)`, `day(s)`, `hour(s)`, `identity(col)`, `void(col)`.
pub fn partition_spec(partitioned_by: &[Expr], schema: &Schema) -> Result<Option<UnboundPartitionSpec>> {
    if partitioned_by.is_empty() {
        return Ok(None);
    }
    let mut builder = UnboundPartitionSpec::builder();
    for expr in partitioned_by {
        let (column, transform) = partition_field(expr)?;
        let field = schema
            .field_by_name(&column)
            .ok_or_else(|| SqlError::invalid(format!("partition column {column} is not a column of the table")))?;
        let name = match transform {
            Transform::Identity => column.clone(),
            Transform::Bucket(_) => format!("{column}_bucket"),
            Transform::Truncate(_) => format!("{column}_trunc"),
            Transform::Year => format!("{column}_year"),
            Transform::Month => format!("{column}_month"),
            Transform::Day => format!("{column}_day"),
            Transform::Hour => format!("{column}_hour"),
            _ => format!("{column}_null"),
        };
        if transform.result_type(&field.field_type).is_err() {
            return Err(SqlError::invalid(format!(
                "{transform} does not apply to column {column} ({})",
                field.field_type
            )));
        }
        builder = builder.add_partition_field(field.id, name, transform)?;
    }
    Ok(Some(builder.build()))
}

fn partition_field(expr: &Expr) -> Result<(String, Transform)> {
    match expr {
        Expr::Identifier(ident) => Ok((ident.value.clone(), Transform::Identity)),
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            let FunctionArguments::List(list) = &function.args else {
                return Err(SqlError::invalid(format!("partition transform {name} needs arguments")));
            };
            let args: Vec<&Expr> = list
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect();
            let column = |e: &Expr| match e {
                Expr::Identifier(ident) => Ok(ident.value.clone()),
                other => Err(SqlError::invalid(format!("partition transform {name} takes a column, not {other}"))),
            };
            let number = |e: &Expr| match e {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => n
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| SqlError::invalid(format!("{name} needs a positive width, not {n}"))),
                    other => Err(SqlError::invalid(format!("{name} needs a positive width, not {other}"))),
                },
                other => Err(SqlError::invalid(format!("{name} needs a positive width, not {other}"))),
            };
            match (name.as_str(), args.as_slice()) {
                ("bucket", [n, c]) => Ok((column(c)?, Transform::Bucket(number(n)?))),
                ("truncate", [w, c]) => Ok((column(c)?, Transform::Truncate(number(w)?))),
                ("year" | "years", [c]) => Ok((column(c)?, Transform::Year)),
                ("month" | "months", [c]) => Ok((column(c)?, Transform::Month)),
                ("day" | "days" | "date", [c]) => Ok((column(c)?, Transform::Day)),
                ("hour" | "hours", [c]) => Ok((column(c)?, Transform::Hour)),
                ("identity", [c]) => Ok((column(c)?, Transform::Identity)),
                ("void", [c]) => Ok((column(c)?, Transform::Void)),
                _ => Err(SqlError::invalid(format!(
                    "unknown partition transform {expr}; use a column, bucket(N, col), truncate(W, col), year/month/day/hour(col)"
                ))),
            }
        }
        other => Err(SqlError::invalid(format!("unknown partition transform {other}"))),
    }
}

/// Properties `CREATE TABLE` sets, with string values.
pub fn properties(pairs: &[(String, String)]) -> HashMap<String, String> {
    pairs.iter().cloned().collect()
}

/// `CREATE TABLE` text for `table` (the base store of a keyed table).
pub fn show_create_table(name: &str, table: &Table, primary_key: &[String]) -> String {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let mut lines = Vec::new();
    for field in schema.as_struct().fields() {
        let mut line = format!("  {} {}", quote(&field.name), sql_type(&field.field_type));
        if field.required {
            line.push_str(" NOT NULL");
        }
        if let Some(doc) = &field.doc {
            line.push_str(&format!(" COMMENT '{}'", doc.replace('\'', "''")));
        }
        lines.push(line);
    }
    if !primary_key.is_empty() {
        lines.push(format!("  PRIMARY KEY ({})", primary_key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")));
    }
    let mut text = format!("CREATE TABLE {name} (\n{}\n)", lines.join(",\n"));
    let spec = metadata.default_partition_spec();
    if !spec.fields().is_empty() {
        let fields: Vec<String> = spec
            .fields()
            .iter()
            .map(|f| {
                let column =
                    schema.field_by_id(f.source_id).map(|c| quote(&c.name)).unwrap_or_else(|| f.source_id.to_string());
                match f.transform {
                    Transform::Identity => column,
                    Transform::Bucket(n) => format!("bucket({n}, {column})"),
                    Transform::Truncate(w) => format!("truncate({w}, {column})"),
                    Transform::Year => format!("years({column})"),
                    Transform::Month => format!("months({column})"),
                    Transform::Day => format!("days({column})"),
                    Transform::Hour => format!("hours({column})"),
                    other => format!("{other}({column})"),
                }
            })
            .collect();
        text.push_str(&format!("\nPARTITIONED BY ({})", fields.join(", ")));
    }
    // What `PRIMARY KEY` sets is said by it.
    let internal = [
        "table-format",
        "mixed-format.primary-key-fields",
        "mixed-format.change.identifier",
        "mixed-format.table-store",
    ];
    let mut props: Vec<(&String, &String)> =
        metadata.properties().iter().filter(|(k, _)| !internal.contains(&k.as_str())).collect();
    props.sort();
    if !props.is_empty() {
        let pairs: Vec<String> =
            props.iter().map(|(k, v)| format!("  '{}' = '{}'", k.replace('\'', "''"), v.replace('\'', "''"))).collect();
        text.push_str(&format!("\nTBLPROPERTIES (\n{}\n)", pairs.join(",\n")));
    }
    text
}

/// An Iceberg type as SQL.
pub fn sql_type(ty: &iceberg::spec::Type) -> String {
    use iceberg::spec::{PrimitiveType as P, Type};
    match ty {
        Type::Primitive(p) => match p {
            P::Boolean => "BOOLEAN".into(),
            P::Int => "INT".into(),
            P::Long => "BIGINT".into(),
            P::Float => "FLOAT".into(),
            P::Double => "DOUBLE".into(),
            P::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            P::Date => "DATE".into(),
            P::Time => "TIME".into(),
            P::Timestamp | P::TimestampNs => "TIMESTAMP".into(),
            P::Timestamptz | P::TimestamptzNs => "TIMESTAMP WITH TIME ZONE".into(),
            P::String => "STRING".into(),
            P::Uuid => "UUID".into(),
            P::Fixed(n) => format!("FIXED({n})"),
            P::Binary => "BINARY".into(),
        },
        Type::Struct(s) => format!(
            "STRUCT<{}>",
            s.fields()
                .iter()
                .map(|f| format!("{}: {}", quote(&f.name), sql_type(&f.field_type)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::List(l) => format!("ARRAY<{}>", sql_type(&l.element_field.field_type)),
        Type::Map(m) => format!("MAP<{}, {}>", sql_type(&m.key_field.field_type), sql_type(&m.value_field.field_type)),
    }
}

/// An identifier, quoted when it is not a plain lower-case word.
pub fn quote(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}
