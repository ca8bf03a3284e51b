//! Keyset pagination for listings: a page token is the last name of the previous page.

/// Which page of a listing to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Return names strictly after this one; `None` starts at the beginning.
    pub after: Option<String>,
    /// At most this many items; `None` returns everything.
    pub limit: Option<u32>,
}

impl PageRequest {
    /// The whole listing in one page.
    pub fn all() -> Self {
        Self::default()
    }

    /// SQL `LIMIT` value: one more than asked, to learn whether a next page exists.
    pub(crate) fn sql_limit(&self) -> i64 {
        self.limit.map_or(i64::MAX, |l| i64::from(l) + 1)
    }

    /// Lower bound for the keyset condition `name > $n` (the empty string is below every name).
    pub(crate) fn sql_after(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// Cuts the over-fetched rows down to one page, remembering where the next one starts.
    pub(crate) fn finish<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let next = match self.limit {
            Some(limit) if items.len() > limit as usize => {
                items.truncate(limit as usize);
                items.last().map(key)
            }
            _ => None,
        };
        Page { items, next }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, ordered by name.
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}
