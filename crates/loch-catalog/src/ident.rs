//! Validation of identifiers: namespace levels, table, view and catalog names.
//!
//! Names may hold any character but control characters (U+001F separates namespace levels);
//! they become path segments of default table locations, where a `/` is written `%2F`, so `.`
//! and `..` are refused.

use crate::error::{CatalogError, Result};

/// Longest accepted identifier part, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Deepest accepted namespace.
pub const MAX_NAMESPACE_DEPTH: usize = 16;

/// Checks one part of an identifier; `what` names it in the error ("table name", ...).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("must not be `.` or `..`")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match problem {
        Some(p) => Err(CatalogError::BadRequest(format!("invalid {what} {name:?}: {p}"))),
        None => Ok(()),
    }
}

/// Checks a namespace: one to 16 valid levels.
pub fn validate_namespace(levels: &[String]) -> Result<()> {
    if levels.is_empty() {
        return Err(CatalogError::BadRequest("invalid namespace: it must have at least one level".into()));
    }
    if levels.len() > MAX_NAMESPACE_DEPTH {
        return Err(CatalogError::BadRequest(format!("invalid namespace: deeper than {MAX_NAMESPACE_DEPTH} levels")));
    }
    levels.iter().try_for_each(|l| validate_name("namespace level", l))
}

/// Checks a catalog name: it is also a URL path segment, so only `[A-Za-z0-9_.-]` are allowed.
pub fn validate_catalog_name(name: &str) -> Result<()> {
    validate_name("catalog name", name)?;
    if name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        Ok(())
    } else {
        Err(CatalogError::BadRequest(format!("invalid catalog name {name:?}: use letters, digits, `_`, `-` and `.`")))
    }
}

/// `a.b.c` for messages.
pub fn display_namespace(levels: &[String]) -> String {
    levels.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_path_segments_are_rejected() {
        for bad in ["", ".", "..", "a\u{1f}b", "a\nb", &"x".repeat(256)] {
            assert!(validate_name("table name", bad).is_err(), "{bad:?}");
        }
        for good in ["t", "my table", "t.v2", "ünïcode", "a-b_c", "tab/le", "a\\b", "%2e%2e"] {
            assert!(validate_name("table name", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn namespaces_need_valid_levels() {
        assert!(validate_namespace(&[]).is_err());
        assert!(validate_namespace(&["a".into(), String::new()]).is_err());
        assert!(validate_namespace(&vec!["a".to_string(); 17]).is_err());
        assert!(validate_namespace(&["a".into(), "b".into()]).is_ok());
    }

    #[test]
    fn catalog_names_are_url_safe() {
        assert!(validate_catalog_name("local").is_ok());
        assert!(validate_catalog_name("prod-2.eu_west").is_ok());
        assert!(validate_catalog_name("a b").is_err());
        assert!(validate_catalog_name("a%20").is_err());
    }
}
