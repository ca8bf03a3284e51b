//! A small filter language for reads over HTTP (`filter=` of a keyed table's rows):
//! comparisons joined by `and`, each `column op value` with `op` one of `=`, `!=`, `<`, `<=`,
//! `>`, `>=`, or `column in (value, ...)`, or `column is null` / `is not null`. Values are typed
//! by their column (`'quoted'` when they hold spaces, commas or quotes; `''` is a quote), so
//! `day = 2024-05-01` filters a date column and `id in (1, 2)` a long one.

use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{Datum, PrimitiveType, Schema, Type};

use crate::error::{Result, TableError};

/// Longest filter text accepted.
pub const MAX_FILTER_LEN: usize = 8192;
/// Most comparisons one filter may join.
pub const MAX_COMPARISONS: usize = 64;

/// Parses `text` into a predicate on `schema`'s columns; the error says what is wrong where.
pub fn parse_filter(text: &str, schema: &Schema) -> Result<Predicate> {
    if text.len() > MAX_FILTER_LEN {
        return Err(bad(format!("the filter is longer than {MAX_FILTER_LEN} bytes")));
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(bad("the filter is empty".into()));
    }
    let mut parts = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let (predicate, after) = comparison(rest, schema)?;
        parts.push(predicate);
        if parts.len() > MAX_COMPARISONS {
            return Err(bad(format!("the filter joins more than {MAX_COMPARISONS} comparisons")));
        }
        match after {
            [] => break,
            [Token::Word(w), more @ ..] if w.eq_ignore_ascii_case("and") => rest = more,
            [other, ..] => return Err(bad(format!("expected `and` or the end, found {}", other.show()))),
        }
    }
    parts.into_iter().reduce(Predicate::and).ok_or_else(|| bad("the filter is empty".into()))
}

fn bad(message: String) -> TableError {
    TableError::Invalid(format!("filter: {message}"))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A bare word: a column, a keyword or an unquoted value.
    Word(String),
    /// A `'quoted'` value.
    Quoted(String),
    /// An operator or punctuation.
    Symbol(&'static str),
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Quoted(q) => format!("'{q}'"),
            Token::Symbol(s) => format!("`{s}`"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    const SYMBOLS: [&str; 9] = ["<=", ">=", "!=", "<>", "=", "<", ">", "(", ")"];
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\'')) if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    Some((_, '\'')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err(bad(format!("the quote at {at} is not closed"))),
                }
            }
            tokens.push(Token::Quoted(value));
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| text[at..].starts_with(**s)) {
            for _ in 0..symbol.len() {
                chars.next();
            }
            tokens.push(Token::Symbol(if *symbol == "<>" { "!=" } else { symbol }));
        } else {
            let mut word = String::new();
            while let Some(&(i, c)) = chars.peek() {
                if c.is_whitespace() || c == ',' || c == '\'' || SYMBOLS.iter().any(|s| text[i..].starts_with(*s)) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Word(word));
        }
    }
    Ok(tokens)
}

/// One comparison at the head of `tokens`, and the tokens after it.
fn comparison<'a>(tokens: &'a [Token], schema: &Schema) -> Result<(Predicate, &'a [Token])> {
    let Some((Token::Word(column), rest)) = tokens.split_first() else {
        return Err(bad(match tokens.first() {
            Some(t) => format!("expected a column, found {}", t.show()),
            None => "expected a column at the end".into(),
        }));
    };
    let field = schema.field_by_name(column).ok_or_else(|| bad(format!("the table has no column {column:?}")))?;
    let reference = Reference::new(column.clone());
    let word = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.eq_ignore_ascii_case(w));
    if word(rest.first(), "is") {
        if word(rest.get(1), "null") {
            return Ok((reference.is_null(), &rest[2..]));
        }
        if word(rest.get(1), "not") && word(rest.get(2), "null") {
            return Ok((reference.is_not_null(), &rest[3..]));
        }
        return Err(bad(format!("expected `is null` or `is not null` after {column:?}")));
    }
    if word(rest.first(), "in") {
        if rest.get(1) != Some(&Token::Symbol("(")) {
            return Err(bad(format!("expected `(` after `{column} in`")));
        }
        let close = rest
            .iter()
            .position(|t| *t == Token::Symbol(")"))
            .ok_or_else(|| bad(format!("the list after `{column} in` is not closed")))?;
        let values = rest[2..close].iter().map(|t| value(t, &field.field_type, column)).collect::<Result<Vec<_>>>()?;
        if values.is_empty() {
            return Err(bad(format!("the list after `{column} in` is empty")));
        }
        return Ok((reference.is_in(values), &rest[close + 1..]));
    }
    let (Some(Token::Symbol(op)), Some(operand)) = (rest.first(), rest.get(1)) else {
        return Err(bad(format!("expected an operator and a value after {column:?}")));
    };
    let datum = value(operand, &field.field_type, column)?;
    let predicate = match *op {
        "=" => reference.equal_to(datum),
        "!=" => reference.not_equal_to(datum),
        "<" => reference.less_than(datum),
        "<=" => reference.less_than_or_equal_to(datum),
        ">" => reference.greater_than(datum),
        ">=" => reference.greater_than_or_equal_to(datum),
        other => return Err(bad(format!("`{other}` is not a comparison"))),
    };
    Ok((predicate, &rest[2..]))
}

/// `token` as a value of a column of type `ty`.
fn value(token: &Token, ty: &Type, column: &str) -> Result<Datum> {
    let text = match token {
        Token::Word(w) | Token::Quoted(w) => w.as_str(),
        Token::Symbol(s) => return Err(bad(format!("expected a value for {column:?}, found `{s}`"))),
    };
    let wrong = |e: String| bad(format!("{text:?} is not a value of {column:?} ({ty}): {e}"));
    let Type::Primitive(primitive) = ty else {
        return Err(bad(format!("{column:?} is a {ty} column; only primitive columns can be filtered")));
    };
    match primitive {
        PrimitiveType::Boolean => Datum::bool_from_str(text).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Int => text.parse::<i32>().map(Datum::int).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Long => text.parse::<i64>().map(Datum::long).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Float => text.parse::<f32>().map(Datum::float).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Double => text.parse::<f64>().map(Datum::double).map_err(|e| wrong(e.to_string())),
        PrimitiveType::String => Ok(Datum::string(text)),
        PrimitiveType::Date => Datum::date_from_str(text).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Timestamp => Datum::timestamp_from_str(text).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Timestamptz => Datum::timestamptz_from_str(text).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Uuid => Datum::uuid_from_str(text).map_err(|e| wrong(e.to_string())),
        PrimitiveType::Decimal { scale, .. } => {
            // Written with exactly the column's scale, so it converts to the column's type.
            let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
            let digits = usize::try_from(*scale).unwrap_or(0);
            if fraction.len() > digits || !fraction.chars().all(|c| c.is_ascii_digit()) {
                return Err(wrong(format!("at most {digits} digits after the point")));
            }
            let scaled = if digits == 0 { whole.to_string() } else { format!("{whole}.{fraction:0<digits$}") };
            Datum::decimal_from_str(&scaled).and_then(|d| d.to(ty)).map_err(|e| wrong(e.to_string()))
        }
        other => Err(bad(format!("{column:?} is a {other} column, which the filter cannot compare"))),
    }
}

#[cfg(test)]
mod tests {
    use iceberg::spec::NestedField;

    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "day", Type::Primitive(PrimitiveType::Date)).into(),
                NestedField::optional(3, "name", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(4, "price", Type::Primitive(PrimitiveType::Decimal { precision: 9, scale: 2 }))
                    .into(),
            ])
            .build()
            .unwrap()
    }

    #[test]
    fn comparisons_join_with_and_and_take_their_column_s_type() {
        let parsed =
            parse_filter("id in (1, 2) and day >= 2024-05-01 AND name = 'O''Brien, Jr' and price < 3.5", &schema())
                .unwrap();
        let expected = Reference::new("id")
            .is_in([Datum::long(1), Datum::long(2)])
            .and(Reference::new("day").greater_than_or_equal_to(Datum::date_from_str("2024-05-01").unwrap()))
            .and(Reference::new("name").equal_to(Datum::string("O'Brien, Jr")))
            .and(Reference::new("price").less_than(Datum::decimal_from_str("3.50").unwrap()));
        assert_eq!(parsed.to_string(), expected.to_string());
        assert_eq!(
            parse_filter("name is not null and id<>3", &schema()).unwrap().to_string(),
            Reference::new("name").is_not_null().and(Reference::new("id").not_equal_to(Datum::long(3))).to_string()
        );
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let cases: Vec<(&str, &str)> = vec![
            ("", "empty"),
            ("nope = 1", "no column \"nope\""),
            ("id = x", "not a value of \"id\""),
            ("id = 1 or id = 2", "expected `and`"),
            ("id in (1, 2", "not closed"),
            ("id in ()", "empty"),
            ("name = 'open", "not closed"),
            ("id =", "expected an operator and a value"),
            ("price = 1.234", "at most 2 digits"),
            ("id is maybe", "is null"),
            ("= 1", "expected a column"),
        ];
        let many = "id = 1 and ".repeat(65);
        let long = format!("name = '{}'", "x".repeat(9000));
        let limits =
            [(many.trim_end_matches(" and "), "more than 64 comparisons"), (long.as_str(), "longer than 8192")];
        for (text, says) in cases.into_iter().chain(limits) {
            let error = parse_filter(text, &schema()).unwrap_err().to_string();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
