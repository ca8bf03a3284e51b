//! `MERGE INTO target USING source ON condition WHEN [NOT] MATCHED [AND c] THEN ...`.
//!
//! Clauses apply in order, as in Spark: a target row the source matches takes the first
//! `WHEN MATCHED` clause whose condition holds (`UPDATE SET` or `DELETE`; none: it stays), a
//! source row that matches no target row the first `WHEN NOT MATCHED` clause whose condition
//! holds (`INSERT`), and a target row the source does not match the first `WHEN NOT MATCHED BY
//! SOURCE` clause whose condition holds (`UPDATE SET` or `DELETE`). A target row matched by two source rows fails the statement. Everything
//! is one commit: an Iceberg table gets its position deletes and new rows in one row-delta
//! snapshot, a keyed table its deletes, update pairs and inserts in one change-store
//! transaction.

use std::collections::HashSet;

use arrow_array::{Array, BooleanArray, Int64Array};
use arrow_row::{RowConverter, SortField};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Merge, MergeAction, MergeClauseKind, MergeInsertKind, Statement as SqlStatement,
};

use crate::backend::LoadedTable;
use crate::ddl::quote;
use crate::dml::{FILE_ROWS, KEEP, POSITION};
use crate::engine::{SqlEngine, parts, table_target};
use crate::error::{Result, SqlError};
use crate::write;

/// Alias of the matched rows' action column.
const ACTION: &str = "__loch_action";
/// Action of a matched row the first holding clause updates.
const UPDATE: i64 = 1;
/// Action of a matched row the first holding clause deletes.
const DELETE: i64 = 2;

/// The clauses as SQL over the target (by its alias) and the source.
struct Clauses {
    /// Target rows the source matches (`WHEN MATCHED`).
    matched: Actions,
    /// Target rows the source does not match (`WHEN NOT MATCHED BY SOURCE`); `None` without
    /// such clauses.
    by_source: Option<Actions>,
    /// For an unmatched source row: whether some `INSERT` clause holds (`None`: no clause).
    insert_filter: Option<String>,
    /// For an unmatched source row: each table column's value from the first holding clause.
    inserted: Vec<String>,
}

/// What clauses on target rows do, as SQL.
struct Actions {
    /// A row's action (0: no clause holds).
    action: String,
    /// Each table column's value after the first holding `UPDATE` clause.
    updated: Vec<String>,
}

/// The table and alias (its name when it has none) of `MERGE`'s target.
fn target(merge: &Merge) -> Result<(datafusion::sql::sqlparser::ast::ObjectName, String)> {
    let (name, alias) = table_target(&merge.table)?;
    let alias = match alias {
        Some(alias) => alias,
        None => parts(&name)?.pop().unwrap_or_default(),
    };
    Ok((name, alias))
}

fn clauses(merge: &Merge, columns: &[String], alias: &str, primary_key: &[String]) -> Result<Clauses> {
    let mut matched = Vec::new();
    let mut by_source = Vec::new();
    let mut inserts: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for clause in &merge.clauses {
        let predicate = clause.predicate.as_ref().map_or_else(|| "TRUE".to_string(), ToString::to_string);
        match (&clause.clause_kind, &clause.action) {
            (MergeClauseKind::Matched, MergeAction::Update(_) | MergeAction::Delete { .. }) => {
                matched.push((predicate, &clause.action));
            }
            (MergeClauseKind::NotMatchedBySource, MergeAction::Update(_) | MergeAction::Delete { .. }) => {
                by_source.push((predicate, &clause.action));
            }
            (MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget, MergeAction::Insert(insert)) => {
                if insert.insert_predicate.is_some() {
                    return Err(SqlError::invalid("MERGE ... INSERT ... WHERE is not supported"));
                }
                let MergeInsertKind::Values(values) = &insert.kind else {
                    return Err(SqlError::invalid("MERGE ... INSERT needs VALUES (...)"));
                };
                let [row] = values.rows.as_slice() else {
                    return Err(SqlError::invalid("MERGE ... INSERT VALUES takes one row"));
                };
                let named: Vec<String> = insert
                    .columns
                    .iter()
                    .map(|c| parts(c).map(|mut p| p.pop().unwrap_or_default()))
                    .collect::<Result<_>>()?;
                let named = if named.is_empty() { columns.to_vec() } else { named };
                if named.len() != row.len() {
                    return Err(SqlError::invalid(format!(
                        "MERGE INSERT names {} columns but gives {} values",
                        named.len(),
                        row.len()
                    )));
                }
                let mut values = vec![None; columns.len()];
                for (column, value) in named.iter().zip(row) {
                    let i = columns
                        .iter()
                        .position(|c| c == column)
                        .ok_or_else(|| SqlError::invalid(format!("the target has no column {column}")))?;
                    if values[i].replace(value.to_string()).is_some() {
                        return Err(SqlError::invalid(format!("MERGE INSERT names column {column} twice")));
                    }
                }
                inserts.push((predicate, values));
            }
            (kind, action) => {
                return Err(SqlError::invalid(format!("MERGE ... WHEN {kind} THEN {action} is not allowed")));
            }
        }
    }
    let inserted = (0..columns.len())
        .map(|i| {
            let branches: String = inserts
                .iter()
                .map(|(p, values)| format!(" WHEN {p} THEN {}", values[i].as_deref().unwrap_or("NULL")))
                .collect();
            format!("CASE{branches} END")
        })
        .collect();
    let insert_filter =
        (!inserts.is_empty()).then(|| inserts.iter().map(|(p, _)| format!("({p})")).collect::<Vec<_>>().join(" OR "));
    Ok(Clauses {
        matched: actions(&matched, columns, alias, primary_key)?,
        by_source: if by_source.is_empty() { None } else { Some(actions(&by_source, columns, alias, primary_key)?) },
        insert_filter,
        inserted,
    })
}

/// The action and new values of target rows under `clauses` (condition, `UPDATE` or
/// `DELETE`), the first that holds deciding.
fn actions(
    clauses: &[(String, &MergeAction)],
    columns: &[String],
    alias: &str,
    primary_key: &[String],
) -> Result<Actions> {
    let own = |c: &String| format!("{}.{}", quote(alias), quote(c));
    let mut action = String::from("CASE");
    let mut updates: Vec<(&String, Vec<Option<String>>)> = Vec::new();
    for (predicate, clause) in clauses {
        match clause {
            MergeAction::Update(update) => {
                if update.update_predicate.is_some() || update.delete_predicate.is_some() {
                    return Err(SqlError::invalid("MERGE ... UPDATE SET ... WHERE / DELETE WHERE is not supported"));
                }
                let mut values = vec![None; columns.len()];
                for assignment in &update.assignments {
                    let AssignmentTarget::ColumnName(column) = &assignment.target else {
                        return Err(SqlError::invalid("MERGE UPDATE SET (a, b) = ... is not supported"));
                    };
                    let column = parts(column)?.pop().unwrap_or_default();
                    let i = columns
                        .iter()
                        .position(|c| *c == column)
                        .ok_or_else(|| SqlError::invalid(format!("the target has no column {column}")))?;
                    if primary_key.contains(&column) {
                        return Err(SqlError::invalid(format!(
                            "MERGE cannot change primary key column {column}; delete and insert instead"
                        )));
                    }
                    if values[i].replace(assignment.value.to_string()).is_some() {
                        return Err(SqlError::invalid(format!("MERGE UPDATE sets column {column} twice")));
                    }
                }
                action.push_str(&format!(" WHEN {predicate} THEN {UPDATE}"));
                updates.push((predicate, values));
            }
            _ => action.push_str(&format!(" WHEN {predicate} THEN {DELETE}")),
        }
    }
    action.push_str(if clauses.is_empty() { " WHEN FALSE THEN 1 ELSE 0 END" } else { " ELSE 0 END" });
    let updated = (0..columns.len())
        .map(|i| {
            let branches: String = updates
                .iter()
                .map(|(p, values)| format!(" WHEN {p} THEN {}", values[i].clone().unwrap_or_else(|| own(&columns[i]))))
                .collect();
            if branches.is_empty() { own(&columns[i]) } else { format!("CASE{branches} ELSE {} END", own(&columns[i])) }
        })
        .collect();
    Ok(Actions { action, updated })
}

impl SqlEngine {
    /// Runs `MERGE`; the target rows changed plus the rows inserted.
    pub(crate) async fn merge(&self, statement: &SqlStatement, merge: &Merge) -> Result<u64> {
        if merge.output.is_some() {
            return Err(SqlError::invalid("MERGE ... OUTPUT is not supported"));
        }
        let (name, alias) = target(merge)?;
        let (table, loaded) = self.load(&name).await?;
        let schema = loaded.table().metadata().current_schema().clone();
        let columns: Vec<String> = schema.as_struct().fields().iter().map(|f| f.name.clone()).collect();
        let clauses = clauses(merge, &columns, &alias, loaded.primary_key())?;
        let ctx = self.context(&DFStatement::Statement(Box::new(statement.clone()))).await?;
        let target_schema = write::table_arrow_schema(loaded.table())?;
        let (source, on, own) = (merge.source.to_string(), merge.on.to_string(), quote(&alias));

        // Source rows that match no target row.
        let mut inserts = Vec::new();
        if let Some(filter) = &clauses.insert_filter {
            let values: Vec<String> =
                clauses.inserted.iter().zip(&columns).map(|(v, c)| format!("{v} AS {}", quote(c))).collect();
            let sql = format!(
                "SELECT {} FROM {source} LEFT ANTI JOIN {name} AS {own} ON {on} WHERE {filter}",
                values.join(", ")
            );
            for batch in ctx.sql(&sql).await?.collect().await? {
                if batch.num_rows() > 0 {
                    inserts.push(write::conform(&batch, &target_schema)?);
                }
            }
        }
        let inserted: u64 = inserts.iter().map(|b| b.num_rows() as u64).sum();

        // Target rows with their action: those the source matches, then (with `NOT MATCHED BY
        // SOURCE` clauses) those it does not; `rows` is the target's rows, `first` what to select
        // before the action, `after` how to name each new value.
        let target_rows = |rows: &str, first: &str, after: &dyn Fn(usize, &str) -> String| {
            let select = |joined: &str, actions: &Actions| {
                let updated: Vec<String> = actions.updated.iter().enumerate().map(|(i, v)| after(i, v)).collect();
                format!(
                    "SELECT {first}, {} AS {ACTION}, {} FROM {rows} AS {own} {joined} {source} ON {on}",
                    actions.action,
                    updated.join(", ")
                )
            };
            let mut sql = select("JOIN", &clauses.matched);
            if let Some(by_source) = &clauses.by_source {
                sql = format!("{sql} UNION ALL {}", select("LEFT ANTI JOIN", by_source));
            }
            sql
        };
        let changed = match &loaded {
            LoadedTable::Iceberg(store) => {
                let kept: Vec<String> = columns.iter().map(|c| quote(c)).collect();
                let named = |i: usize, v: &str| format!("{v} AS {}", quote(&columns[i]));
                let query = format!(
                    "SELECT {POSITION}, {ACTION} = {UPDATE} AS {KEEP}, {} FROM ({}) AS __loch_merged WHERE {ACTION} <> 0",
                    kept.join(", "),
                    target_rows(FILE_ROWS, &format!("{own}.{POSITION}"), &named)
                );
                crate::dml::iceberg_row_level(self.backend().as_ref(), &table, store, &ctx, "MERGE", &query, inserts)
                    .await?
            }
            LoadedTable::Keyed { .. } => {
                let before: Vec<String> = columns.iter().map(|c| format!("{own}.{}", quote(c))).collect();
                let named = |i: usize, v: &str| format!("{v} AS __loch_new_{i}");
                let sql = format!(
                    "SELECT * FROM ({}) AS __loch_merged WHERE {ACTION} <> 0",
                    target_rows(&name.to_string(), &before.join(", "), &named)
                );
                let matched = ctx.sql(&sql).await?.collect().await?;
                let n = columns.len();
                let key: Vec<usize> =
                    loaded.primary_key().iter().filter_map(|k| columns.iter().position(|c| c == k)).collect();
                let mut changes = Vec::new();
                let mut seen = HashSet::new();
                let mut count = 0u64;
                for batch in matched.iter().filter(|b| b.num_rows() > 0) {
                    let before = write::conform(&batch.project(&(0..n).collect::<Vec<_>>())?, &target_schema)?;
                    let keys = before.project(&key)?;
                    let fields = keys.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
                    let converter = RowConverter::new(fields)?;
                    for row in converter.convert_columns(keys.columns())?.iter() {
                        if !seen.insert(row.owned()) {
                            return Err(SqlError::invalid(format!(
                                "MERGE matched a row of {table} with more than one source row"
                            )));
                        }
                    }
                    let actions = batch
                        .column(n)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .ok_or_else(|| SqlError::invalid("MERGE actions are not 64-bit integers"))?;
                    let is = |code: i64| -> BooleanArray { actions.iter().map(|a| Some(a == Some(code))).collect() };
                    let deleted = arrow_select::filter::filter_record_batch(&before, &is(DELETE))?;
                    if deleted.num_rows() > 0 {
                        changes.push(write::with_op(&deleted, "-D")?);
                    }
                    let updates = is(UPDATE);
                    if updates.true_count() > 0 {
                        let after = batch.project(&(n + 1..2 * n + 1).collect::<Vec<_>>())?;
                        let after = write::conform(&after, &target_schema)?;
                        let old = arrow_select::filter::filter_record_batch(&before, &updates)?;
                        let new = arrow_select::filter::filter_record_batch(&after, &updates)?;
                        changes.push(write::update_pairs(&old, &new)?);
                    }
                    count += batch.num_rows() as u64;
                }
                for batch in &inserts {
                    changes.push(write::with_op(batch, "+I")?);
                }
                if !changes.is_empty() {
                    self.backend().ingest(&table, changes).await?;
                }
                count
            }
        };
        Ok(changed + inserted)
    }
}
