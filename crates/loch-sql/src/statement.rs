//! Loch's statements: what DataFusion's parser does not know (Iceberg DDL with partition
//! transforms and primary keys, catalog browsing, maintenance) parsed here with sqlparser's
//! own primitives, so positions in errors stay those of the user's text; everything else is
//! handed to DataFusion as parsed.

use datafusion::sql::sqlparser::ast::{
    ColumnDef, DataType, Expr, ObjectName, Query, SqlOption, Statement as SqlStatement, TableConstraint,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use crate::error::{Result, SqlError};

/// A column change of `ALTER TABLE`, as Iceberg's schema evolution allows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnChange {
    /// `ADD COLUMN c type` or `ADD COLUMNS (c type, ...)`: new optional columns.
    Add(Vec<ColumnDef>),
    /// `RENAME COLUMN a TO b`.
    Rename {
        /// The column.
        from: String,
        /// Its new name.
        to: String,
    },
    /// `DROP COLUMN [IF EXISTS] c`.
    Drop {
        /// The column.
        column: String,
        /// No error when it does not exist.
        if_exists: bool,
    },
    /// `ALTER COLUMN c [SET DATA] TYPE t`: a widening (int → bigint, float → double, a
    /// decimal's precision).
    SetType {
        /// The column.
        column: String,
        /// Its new type.
        data_type: DataType,
    },
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SHOW CATALOGS`.
    ShowCatalogs,
    /// `SHOW NAMESPACES [IN catalog]` (also `SHOW DATABASES`, `SHOW SCHEMAS`).
    ShowNamespaces(Option<ObjectName>),
    /// `SHOW TABLES [IN [catalog.]namespace]`.
    ShowTables(Option<ObjectName>),
    /// `DESCRIBE t`: columns with their types, nullability and key.
    Describe(ObjectName),
    /// `SHOW CREATE TABLE t`.
    ShowCreateTable(ObjectName),
    /// `SHOW TBLPROPERTIES t`.
    ShowProperties(ObjectName),
    /// `CREATE NAMESPACE [IF NOT EXISTS] n` (also `CREATE DATABASE`, `CREATE SCHEMA`).
    CreateNamespace {
        /// `[catalog.]namespace`.
        name: ObjectName,
        /// No error when it exists.
        if_not_exists: bool,
    },
    /// `DROP NAMESPACE [IF EXISTS] n`.
    DropNamespace {
        /// `[catalog.]namespace`.
        name: ObjectName,
        /// No error when it does not exist.
        if_exists: bool,
    },
    /// `CREATE TABLE`.
    CreateTable(Box<CreateTable>),
    /// `DROP TABLE [IF EXISTS] t [PURGE]`.
    DropTable {
        /// The table.
        name: ObjectName,
        /// No error when it does not exist.
        if_exists: bool,
        /// Delete its files too.
        purge: bool,
    },
    /// `ALTER TABLE t SET TBLPROPERTIES (...)`.
    SetProperties(ObjectName, Vec<(String, String)>),
    /// `ALTER TABLE t UNSET TBLPROPERTIES [IF EXISTS] (...)`.
    UnsetProperties(ObjectName, Vec<String>),
    /// `ALTER TABLE t ADD | RENAME | DROP | ALTER COLUMN ...`: schema evolution.
    AlterColumns(ObjectName, ColumnChange),
    /// `OPTIMIZE t [FULL]`.
    Optimize {
        /// The table.
        name: ObjectName,
        /// Full optimizing rather than what the triggers pick.
        full: bool,
    },
    /// `EXPIRE SNAPSHOTS t [RETAIN n]`.
    ExpireSnapshots {
        /// The table.
        name: ObjectName,
        /// Snapshots to keep at least.
        retain: Option<u64>,
    },
    /// `CLEAN ORPHAN FILES t [DRY RUN]`.
    CleanOrphanFiles {
        /// The table.
        name: ObjectName,
        /// Only list what would go.
        dry_run: bool,
    },
    /// Anything else: DataFusion plans it (queries, `INSERT`, `DELETE`, `UPDATE`, `EXPLAIN`).
    Sql(Box<SqlStatement>),
}

/// `CREATE TABLE name (columns, PRIMARY KEY (...)) PARTITIONED BY (...) TBLPROPERTIES (...) [AS query]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    /// `[catalog.]namespace.table`.
    pub name: ObjectName,
    /// No error when it exists.
    pub if_not_exists: bool,
    /// Declared columns (empty for `AS SELECT` without a column list).
    pub columns: Vec<ColumnDef>,
    /// Primary key columns: a keyed (Mixed-Iceberg) table when not empty.
    pub primary_key: Vec<String>,
    /// Partition fields, as written: `col`, `bucket(16, col)`, `days(ts)`, ...
    pub partitioned_by: Vec<Expr>,
    /// Table properties.
    pub properties: Vec<(String, String)>,
    /// `AS query`.
    pub query: Option<Box<Query>>,
}

/// A statement of a script with where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The statement.
    pub statement: Statement,
    /// Its text.
    pub text: String,
    /// Line of its first token.
    pub line: u64,
}

/// Parses a script of statements separated by `;`.
pub fn parse_script(sql: &str) -> Result<Vec<Located>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| SqlError::Parse(e.to_string()))?;
    let tokens = mark_time_travel(tokens)?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let start = parser.peek_token();
        if start.token == Token::EOF {
            return Ok(out);
        }
        let statement = parse_one(&mut parser).map_err(parse_error)?;
        let end = parser.peek_token();
        if end.token != Token::EOF && end.token != Token::SemiColon {
            return Err(SqlError::Parse(format!(
                "expected ; or the end of the statement, found {} at {}",
                end.token, end.span.start
            )));
        }
        let text = slice(sql, start.span.start, end.span.start, end.token == Token::EOF);
        out.push(Located { statement, text, line: start.span.start.line });
    }
}

/// Splits a script into the text of its statements (for a terminal's per-statement log),
/// `;` inside strings, comments and parentheses not counting.
pub fn split_script(sql: &str) -> Result<Vec<String>> {
    Ok(parse_script(sql)?.into_iter().map(|s| s.text).collect())
}

fn slice(
    sql: &str,
    start: datafusion::sql::sqlparser::tokenizer::Location,
    end: datafusion::sql::sqlparser::tokenizer::Location,
    to_end: bool,
) -> String {
    let offset = |l: datafusion::sql::sqlparser::tokenizer::Location| -> usize {
        let mut line = 1u64;
        let mut column = 1u64;
        for (i, c) in sql.char_indices() {
            if line == l.line && column == l.column {
                return i;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        sql.len()
    };
    let from = offset(start);
    let to = if to_end { sql.len() } else { offset(end) };
    sql.get(from..to).unwrap_or_default().trim().to_string()
}

/// Marks a table name followed by `FOR SYSTEM_VERSION AS OF <snapshot id>` or
/// `FOR SYSTEM_TIME AS OF '<timestamp>'` (which the generic dialect does not parse) by folding
/// the clause into the name, `t@@version=<id>` or `t@@time=<timestamp>`, so it survives parsing
/// and planning and [`time_travel`] reads it back where the table is resolved.
fn mark_time_travel(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    let is_word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    while i < tokens.len() {
        if is_word(&tokens[i], "FOR") {
            // FOR ws SYSTEM_VERSION|SYSTEM_TIME ws AS ws OF ws value
            let significant: Vec<usize> =
                (i..tokens.len()).filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_))).take(5).collect();
            if let [_, kind, as_, of, value] = significant[..]
                && (is_word(&tokens[kind], "SYSTEM_VERSION") || is_word(&tokens[kind], "SYSTEM_TIME"))
                && is_word(&tokens[as_], "AS")
                && is_word(&tokens[of], "OF")
            {
                let version = is_word(&tokens[kind], "SYSTEM_VERSION");
                let value_text = match &tokens[value].token {
                    Token::Number(n, _) if version => n.clone(),
                    Token::SingleQuotedString(s) if !version => s.clone(),
                    other => {
                        let want = if version { "a snapshot id" } else { "a quoted timestamp" };
                        return Err(SqlError::Parse(format!(
                            "expected {want} after AS OF, found {other} at {}",
                            tokens[value].span.start
                        )));
                    }
                };
                // The name is the last significant token before FOR.
                let Some(name) = out.iter_mut().rev().find(|t| !matches!(t.token, Token::Whitespace(_))) else {
                    return Err(SqlError::Parse(format!(
                        "FOR ... AS OF needs a table before it at {}",
                        tokens[i].span.start
                    )));
                };
                let Token::Word(word) = &name.token else {
                    return Err(SqlError::Parse(format!(
                        "FOR ... AS OF follows a table name at {}",
                        tokens[i].span.start
                    )));
                };
                let base = if word.quote_style.is_some() { word.value.clone() } else { word.value.to_lowercase() };
                let kind = if version { "version" } else { "time" };
                name.token = Token::Word(Word {
                    value: format!("{base}{TIME_TRAVEL}{kind}={value_text}"),
                    quote_style: Some('"'),
                    keyword: Keyword::NoKeyword,
                });
                i = value + 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    Ok(out)
}

/// What separates a table's name from its time travel in a marked name.
const TIME_TRAVEL: &str = "@@";

/// A time travel folded into a table name by parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeTravel {
    /// `FOR SYSTEM_VERSION AS OF <snapshot id>`.
    Snapshot(i64),
    /// `FOR SYSTEM_TIME AS OF '<timestamp>'`.
    Time(String),
}

/// Splits a marked table name into the name and its time travel.
pub fn time_travel(name: &str) -> Result<(&str, Option<TimeTravel>)> {
    let Some((table, travel)) = name.split_once(TIME_TRAVEL) else { return Ok((name, None)) };
    let travel = match travel.split_once('=') {
        Some(("version", id)) => TimeTravel::Snapshot(
            id.parse().map_err(|_| SqlError::invalid(format!("snapshot id {id} is not a 64-bit integer")))?,
        ),
        Some(("time", at)) => TimeTravel::Time(at.to_string()),
        _ => return Err(SqlError::invalid(format!("table name {name} holds {TIME_TRAVEL}, which Loch reserves"))),
    };
    Ok((table, Some(travel)))
}

fn parse_error(e: ParserError) -> SqlError {
    let text = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".into(),
    };
    SqlError::Parse(text)
}

fn word(token: &Token) -> Option<&Word> {
    match token {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

/// True when the next tokens are the words `words` (keywords or not), which are consumed.
fn parse_words(parser: &mut Parser, words: &[&str]) -> bool {
    let matches = words.iter().enumerate().all(|(i, expected)| {
        word(&parser.peek_nth_token_ref(i).token)
            .is_some_and(|w| w.quote_style.is_none() && w.value.eq_ignore_ascii_case(expected))
    });
    if matches {
        for _ in words {
            parser.next_token();
        }
    }
    matches
}

fn parse_one(parser: &mut Parser) -> std::result::Result<Statement, ParserError> {
    if parse_words(parser, &["SHOW", "CATALOGS"]) {
        return Ok(Statement::ShowCatalogs);
    }
    for kind in ["NAMESPACES", "DATABASES", "SCHEMAS"] {
        if parse_words(parser, &["SHOW", kind]) {
            return Ok(Statement::ShowNamespaces(parse_in(parser)?));
        }
    }
    if parse_words(parser, &["SHOW", "TABLES"]) {
        return Ok(Statement::ShowTables(parse_in(parser)?));
    }
    if parse_words(parser, &["SHOW", "CREATE", "TABLE"]) {
        return Ok(Statement::ShowCreateTable(parser.parse_object_name(false)?));
    }
    if parse_words(parser, &["SHOW", "TBLPROPERTIES"]) {
        return Ok(Statement::ShowProperties(parser.parse_object_name(false)?));
    }
    if parse_words(parser, &["DESCRIBE"]) || parse_words(parser, &["DESC"]) {
        parse_words(parser, &["TABLE"]);
        return Ok(Statement::Describe(parser.parse_object_name(false)?));
    }
    for kind in ["NAMESPACE", "DATABASE", "SCHEMA"] {
        if parse_words(parser, &["CREATE", kind]) {
            let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            return Ok(Statement::CreateNamespace { name: parser.parse_object_name(false)?, if_not_exists });
        }
        if parse_words(parser, &["DROP", kind]) {
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            return Ok(Statement::DropNamespace { name: parser.parse_object_name(false)?, if_exists });
        }
    }
    if parse_words(parser, &["CREATE", "TABLE"]) {
        return Ok(Statement::CreateTable(Box::new(parse_create_table(parser)?)));
    }
    if parse_words(parser, &["DROP", "TABLE"]) {
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parser.parse_object_name(false)?;
        let purge = parse_words(parser, &["PURGE"]);
        return Ok(Statement::DropTable { name, if_exists, purge });
    }
    if parse_words(parser, &["ALTER", "TABLE"]) {
        return parse_alter_table(parser);
    }
    if parse_words(parser, &["USE", "CATALOG"]) {
        let name = parser.parse_object_name(false)?;
        return Ok(Statement::Sql(Box::new(SqlStatement::Use(datafusion::sql::sqlparser::ast::Use::Catalog(name)))));
    }
    if parse_words(parser, &["USE", "NAMESPACE"]) {
        let name = parser.parse_object_name(false)?;
        return Ok(Statement::Sql(Box::new(SqlStatement::Use(datafusion::sql::sqlparser::ast::Use::Schema(name)))));
    }
    if parse_words(parser, &["OPTIMIZE"]) {
        parse_words(parser, &["TABLE"]);
        let name = parser.parse_object_name(false)?;
        let full = parse_words(parser, &["FULL"]);
        return Ok(Statement::Optimize { name, full });
    }
    if parse_words(parser, &["EXPIRE", "SNAPSHOTS"]) {
        let name = parser.parse_object_name(false)?;
        let retain = if parse_words(parser, &["RETAIN"]) {
            let n = parser.parse_literal_uint()?;
            parse_words(parser, &["LAST"]);
            Some(n)
        } else {
            None
        };
        return Ok(Statement::ExpireSnapshots { name, retain });
    }
    if parse_words(parser, &["CLEAN", "ORPHAN", "FILES"]) {
        let name = parser.parse_object_name(false)?;
        let dry_run = parse_words(parser, &["DRY", "RUN"]);
        return Ok(Statement::CleanOrphanFiles { name, dry_run });
    }
    Ok(Statement::Sql(Box::new(parser.parse_statement()?)))
}

/// What follows `ALTER TABLE`: a property or a column change.
fn parse_alter_table(parser: &mut Parser) -> std::result::Result<Statement, ParserError> {
    let name = parser.parse_object_name(false)?;
    if parse_words(parser, &["SET", "TBLPROPERTIES"]) {
        return Ok(Statement::SetProperties(name, parse_properties(parser)?));
    }
    if parse_words(parser, &["UNSET", "TBLPROPERTIES"]) {
        let _if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        parser.expect_token(&Token::LParen)?;
        let keys = parser.parse_comma_separated(Parser::parse_literal_string)?;
        parser.expect_token(&Token::RParen)?;
        return Ok(Statement::UnsetProperties(name, keys));
    }
    let change = if parse_words(parser, &["ADD"]) {
        let _ = parse_words(parser, &["COLUMNS"]) || parse_words(parser, &["COLUMN"]);
        let columns = if parser.consume_token(&Token::LParen) {
            let columns = parser.parse_comma_separated(Parser::parse_column_def)?;
            parser.expect_token(&Token::RParen)?;
            columns
        } else {
            parser.parse_comma_separated(Parser::parse_column_def)?
        };
        ColumnChange::Add(columns)
    } else if parse_words(parser, &["RENAME", "COLUMN"]) {
        let from = parser.parse_identifier()?.value;
        parser.expect_keyword(Keyword::TO)?;
        ColumnChange::Rename { from, to: parser.parse_identifier()?.value }
    } else if parse_words(parser, &["DROP"]) {
        let _ = parse_words(parser, &["COLUMN"]);
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        ColumnChange::Drop { column: parser.parse_identifier()?.value, if_exists }
    } else if parse_words(parser, &["ALTER"]) {
        let _ = parse_words(parser, &["COLUMN"]);
        let column = parser.parse_identifier()?.value;
        let _ = parse_words(parser, &["SET", "DATA"]);
        if !parse_words(parser, &["TYPE"]) {
            return parser.expected("TYPE", parser.peek_token());
        }
        ColumnChange::SetType { column, data_type: parser.parse_data_type()? }
    } else {
        return parser.expected(
            "SET TBLPROPERTIES, UNSET TBLPROPERTIES, ADD COLUMN, RENAME COLUMN, DROP COLUMN or ALTER COLUMN",
            parser.peek_token(),
        );
    };
    Ok(Statement::AlterColumns(name, change))
}

fn parse_in(parser: &mut Parser) -> std::result::Result<Option<ObjectName>, ParserError> {
    if parser.parse_keyword(Keyword::IN) || parser.parse_keyword(Keyword::FROM) {
        Ok(Some(parser.parse_object_name(false)?))
    } else {
        Ok(None)
    }
}

fn parse_properties(parser: &mut Parser) -> std::result::Result<Vec<(String, String)>, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let pairs = parser.parse_comma_separated(|p| {
        let key = p.parse_literal_string()?;
        p.expect_token(&Token::Eq)?;
        let value = p.parse_literal_string()?;
        Ok((key, value))
    })?;
    parser.expect_token(&Token::RParen)?;
    Ok(pairs)
}

fn parse_create_table(parser: &mut Parser) -> std::result::Result<CreateTable, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let mut table = CreateTable {
        name,
        if_not_exists,
        columns: Vec::new(),
        primary_key: Vec::new(),
        partitioned_by: Vec::new(),
        properties: Vec::new(),
        query: None,
    };
    if parser.consume_token(&Token::LParen) {
        loop {
            if let Some(constraint) = parser.parse_optional_table_constraint()? {
                match constraint {
                    TableConstraint::PrimaryKey(key) => {
                        if !table.primary_key.is_empty() {
                            return Err(ParserError::ParserError("a table has one PRIMARY KEY".into()));
                        }
                        for column in key.columns {
                            table.primary_key.push(column.column.expr.to_string());
                        }
                    }
                    other => {
                        return Err(ParserError::ParserError(format!(
                            "Iceberg tables support no constraint but PRIMARY KEY, not {other}"
                        )));
                    }
                }
            } else {
                let column = parser.parse_column_def()?;
                table.columns.push(column);
            }
            if parser.consume_token(&Token::RParen) {
                break;
            }
            parser.expect_token(&Token::Comma)?;
        }
    }
    loop {
        if parse_words(parser, &["PARTITIONED", "BY"]) {
            parser.expect_token(&Token::LParen)?;
            table.partitioned_by = parser.parse_comma_separated(Parser::parse_expr)?;
            parser.expect_token(&Token::RParen)?;
        } else if parse_words(parser, &["TBLPROPERTIES"]) {
            table.properties.extend(parse_properties(parser)?);
        } else if parse_words(parser, &["USING"]) {
            let format = parser.parse_identifier()?;
            if !format.value.eq_ignore_ascii_case("iceberg") {
                return Err(ParserError::ParserError(format!("Loch creates Iceberg tables, not {format}")));
            }
        } else if parser.parse_keyword(Keyword::AS) {
            table.query = Some(parser.parse_query()?);
            break;
        } else {
            break;
        }
    }
    // Column-level PRIMARY KEY options.
    for column in &table.columns {
        let key = column
            .options
            .iter()
            .any(|o| matches!(o.option, datafusion::sql::sqlparser::ast::ColumnOption::PrimaryKey(_)));
        if key {
            if !table.primary_key.is_empty() && !table.primary_key.contains(&column.name.value) {
                return Err(ParserError::ParserError("a table has one PRIMARY KEY".into()));
            }
            if !table.primary_key.contains(&column.name.value) {
                table.primary_key.push(column.name.value.clone());
            }
        }
    }
    if table.columns.is_empty() && table.query.is_none() {
        return Err(ParserError::ParserError("CREATE TABLE needs columns or AS SELECT".into()));
    }
    Ok(table)
}

/// The `key = value` options of a `WITH`/`OPTIONS` list as strings.
pub fn options(options: &[SqlOption]) -> Vec<(String, String)> {
    options
        .iter()
        .filter_map(|o| match o {
            SqlOption::KeyValue { key, value } => Some((key.value.clone(), unquote(&value.to_string()))),
            _ => None,
        })
        .collect()
}

fn unquote(s: &str) -> String {
    s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).map_or_else(|| s.to_string(), |s| s.replace("''", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_with_a_primary_key_constraint() {
        let parsed =
            parse_script("CREATE TABLE u (id BIGINT, city STRING, PRIMARY KEY (id)) TBLPROPERTIES ('a' = 'b')");
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        let Statement::CreateTable(create) = &parsed[0].statement else { panic!("{parsed:?}") };
        assert_eq!(create.primary_key, ["id"]);
        assert_eq!(create.properties, [("a".to_string(), "b".to_string())]);
        // A word that starts none of Loch's statements leaves the parser where it was.
        let parsed = parse_script(
            "CREATE TABLE u (id INT) TBLPROPERTIES ('a' = 'b') ; ALTER TABLE db.u SET TBLPROPERTIES ('x' = 'y')",
        );
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&parsed[1].statement, Statement::SetProperties(name, pairs) if name.to_string() == "db.u" && pairs.len() == 1)
        );
        assert_eq!(parsed[1].text, "ALTER TABLE db.u SET TBLPROPERTIES ('x' = 'y')");
    }

    #[test]
    fn alter_table_column_changes() {
        let change = |sql: &str| match parse_script(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).remove(0).statement {
            Statement::AlterColumns(name, change) => (name.to_string(), change),
            other => panic!("{sql}: {other:?}"),
        };
        let (name, added) = change("ALTER TABLE db.t ADD COLUMNS (a INT, b STRING NOT NULL)");
        assert_eq!(name, "db.t");
        let ColumnChange::Add(columns) = added else { panic!("{added:?}") };
        assert_eq!(columns.iter().map(|c| c.name.value.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(matches!(change("ALTER TABLE t ADD COLUMN c BIGINT").1, ColumnChange::Add(c) if c.len() == 1));
        assert_eq!(
            change("ALTER TABLE t RENAME COLUMN a TO b").1,
            ColumnChange::Rename { from: "a".into(), to: "b".into() }
        );
        assert_eq!(
            change("ALTER TABLE t DROP COLUMN IF EXISTS a").1,
            ColumnChange::Drop { column: "a".into(), if_exists: true }
        );
        for sql in ["ALTER TABLE t ALTER COLUMN a TYPE BIGINT", "ALTER TABLE t ALTER a SET DATA TYPE BIGINT"] {
            assert!(matches!(change(sql).1, ColumnChange::SetType { column, .. } if column == "a"), "{sql}");
        }
        let error = parse_script("ALTER TABLE t OWNER TO x").expect_err("not a column change").to_string();
        assert!(error.contains("ADD COLUMN"), "{error}");
        assert!(parse_script("ALTER TABLE t ALTER COLUMN a BIGINT").is_err(), "TYPE is required");
    }

    #[test]
    fn time_travel_folds_into_the_name() {
        let parsed = parse_script(
            "SELECT * FROM t FOR SYSTEM_VERSION AS OF 42 JOIN u FOR SYSTEM_TIME AS OF '2026-01-01 00:00:00' ON true",
        );
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        let Statement::Sql(statement) = &parsed[0].statement else { panic!("{parsed:?}") };
        let text = statement.to_string();
        assert!(text.contains("\"t@@version=42\""), "{text}");
        assert!(text.contains("\"u@@time=2026-01-01 00:00:00\""), "{text}");
        assert_eq!(
            time_travel("t@@version=42").unwrap_or_else(|e| panic!("{e}")),
            ("t", Some(TimeTravel::Snapshot(42)))
        );
        assert!(parse_script("SELECT * FROM t FOR SYSTEM_VERSION AS OF 'x'").is_err());
        assert!(time_travel("t@@version=x").is_err());
    }
}
