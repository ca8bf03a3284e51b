//! Locations of tables and files, compared as URIs rather than as strings.
//!
//! Java engines name local files `file:/p`, other clients `file:///p` or `file://localhost/p`;
//! S3 paths arrive as `s3://`, `s3a://` or `s3n://`. They name the same places, so Loch parses
//! every location into one form before comparing two, and hands storage the canonical form
//! ([`Location::canonical`]) while keeping the client's spelling ([`Location::as_str`]) wherever
//! the location is stored or handed out.

use std::fmt;

/// The store a location lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Store {
    /// The local file system.
    File,
    /// An S3 bucket (`s3`, `s3a` and `s3n` are the same store).
    S3 {
        /// The bucket name.
        bucket: String,
    },
}

/// Why a string is not a usable location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid location {raw:?}: {reason}")]
pub struct LocationError {
    raw: String,
    reason: &'static str,
}

impl LocationError {
    fn new(raw: &str, reason: &'static str) -> Self {
        Self { raw: raw.to_string(), reason }
    }

    /// What is wrong with the location, without the location itself.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// A parsed absolute location: a store and the path segments inside it.
///
/// Local paths drop empty segments (`a//b` is `a/b` to the file system); S3 keys keep them,
/// since `a//b` and `a/b` are different keys. `.` and `..` segments are refused everywhere:
/// storage would resolve them and a location could escape where it claims to be.
#[derive(Debug, Clone)]
pub struct Location {
    raw: String,
    store: Store,
    segments: Vec<String>,
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.store == other.store && self.segments == other.segments
    }
}

impl Eq for Location {}

impl Location {
    /// Parses `/abs/path`, `file:/p`, `file:///p`, `file://localhost/p`, `s3://bucket/key`
    /// (`s3a://`, `s3n://`). Trailing slashes are dropped from the kept spelling.
    pub fn parse(raw: &str) -> Result<Self, LocationError> {
        let (store, path) = split(raw)?;
        let store = match store {
            StoreRef::File => Store::File,
            StoreRef::S3(bucket) => Store::S3 { bucket: bucket.to_string() },
        };
        let segments: Vec<String> = segments_of(matches!(store, Store::S3 { .. }), path).map(str::to_string).collect();
        Ok(Self { raw: raw.trim_end_matches('/').to_string(), store, segments })
    }

    /// The location as the client spelled it (without trailing slashes).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The one spelling storage gets: `file:///p` or `s3://bucket/key`.
    pub fn canonical(&self) -> String {
        let mut out = match &self.store {
            Store::File => String::from("file://"),
            Store::S3 { bucket } => format!("s3://{bucket}"),
        };
        for segment in &self.segments {
            out.push('/');
            out.push_str(segment);
        }
        if out == "file://" {
            out.push('/');
        }
        out
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Path segments inside the store (for S3, the key's segments).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The local path of a `file` location.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        (self.store == Store::File).then(|| {
            let mut path = std::path::PathBuf::from("/");
            path.extend(&self.segments);
            path
        })
    }

    /// True when `other` lies strictly inside this location.
    pub fn contains(&self, other: &Location) -> bool {
        self.store == other.store
            && other.segments.len() > self.segments.len()
            && other.segments.starts_with(&self.segments)
    }

    /// True when the path `other` parses and lies strictly inside this location.
    pub fn contains_str(&self, other: &str) -> bool {
        let own = match &self.store {
            Store::File => StoreRef::File,
            Store::S3 { bucket } => StoreRef::S3(bucket),
        };
        inside((own, self.segments.iter().map(String::as_str)), other)
    }

    /// True when both parse and `path` lies strictly inside `location`. Allocates nothing: the
    /// evaluator asks it of every live file of every table it checks.
    pub fn str_contains(location: &str, path: &str) -> bool {
        split(location).is_ok_and(|(store, own)| inside((store, segments_of(store.keeps_empty(), own)), path))
    }

    /// True when the two are the same place or one lies inside the other: two tables whose
    /// locations overlap could delete each other's files.
    pub fn overlaps(&self, other: &Location) -> bool {
        self == other || self.contains(other) || other.contains(self)
    }

    /// `{self}/{relative}` in the client's spelling.
    pub fn join(&self, relative: &str) -> String {
        format!("{}/{}", self.raw, relative.trim_start_matches('/'))
    }

    /// True when a path segment is empty (`s3://b/a//c`): fine for a file, not for a table's
    /// directory.
    pub fn has_empty_segments(&self) -> bool {
        self.segments.iter().any(String::is_empty)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The path part of `file:` URIs: `file:/p`, `file:///p`, `file://localhost/p`.
fn file_path<'a>(raw: &str, rest: &'a str) -> Result<&'a str, LocationError> {
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = match after.find('/') {
                Some(i) => after.split_at(i),
                None => (after, ""),
            };
            if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                return Err(LocationError::new(raw, "file locations must be on this host (file:///path)"));
            }
            path
        }
        None => rest,
    };
    if !path.starts_with('/') {
        return Err(LocationError::new(raw, "file locations must be absolute (file:///path)"));
    }
    Ok(path)
}

/// A location's store as [`split`] finds it, borrowing the bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreRef<'a> {
    File,
    S3(&'a str),
}

impl StoreRef<'_> {
    /// S3 keys keep empty segments; local paths do not.
    fn keeps_empty(self) -> bool {
        matches!(self, StoreRef::S3(_))
    }
}

/// True when `path` parses and lies strictly inside the location of `own` store and segments.
fn inside<'a>((store, mut own): (StoreRef<'_>, impl Iterator<Item = &'a str>), path: &str) -> bool {
    let Ok((theirs_store, theirs)) = split(path) else { return false };
    let mut theirs = segments_of(theirs_store.keeps_empty(), theirs);
    store == theirs_store && own.all(|segment| theirs.next() == Some(segment)) && theirs.next().is_some()
}

/// The store and path of `raw`, checked as [`Location::parse`] documents (`.` and `..`
/// segments included), without allocating.
fn split(raw: &str) -> Result<(StoreRef<'_>, &str), LocationError> {
    if raw.is_empty() {
        return Err(LocationError::new(raw, "it is empty"));
    }
    if raw.chars().any(char::is_control) {
        return Err(LocationError::new(raw, "it contains control characters"));
    }
    let (store, path) = if raw.starts_with('/') {
        (StoreRef::File, raw)
    } else {
        let (scheme, rest) =
            raw.split_once(':').ok_or_else(|| LocationError::new(raw, "it is not an absolute path or URI"))?;
        if scheme.eq_ignore_ascii_case("file") {
            (StoreRef::File, file_path(raw, rest)?)
        } else if ["s3", "s3a", "s3n"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
            let rest = rest.strip_prefix("//").ok_or_else(|| LocationError::new(raw, "expected s3://bucket/key"))?;
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                return Err(LocationError::new(raw, "the bucket name is missing or invalid"));
            }
            (StoreRef::S3(bucket), key)
        } else {
            return Err(LocationError::new(raw, "unsupported scheme: use file:/ or s3://"));
        }
    };
    if segments_of(store.keeps_empty(), path).any(|s| s == "." || s == "..") {
        return Err(LocationError::new(raw, "`.` and `..` segments are not allowed"));
    }
    Ok((store, path))
}

/// The segments of `path`: local paths drop empty ones, S3 keys keep them (`keep_empty`).
fn segments_of(keep_empty: bool, path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    trimmed.split('/').filter(move |s| !trimmed.is_empty() && (keep_empty || !s.is_empty()))
}

fn valid_bucket(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket.len() <= 255
        && bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && bucket != "."
        && bucket != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Location {
        Location::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_spellings_of_a_local_path_are_one_place() {
        let forms =
            ["/tmp/wh/t", "file:/tmp/wh/t", "file:///tmp/wh/t", "file://localhost/tmp/wh/t", "file:///tmp//wh/t/"];
        for form in forms {
            assert_eq!(loc(form), loc("file:///tmp/wh/t"), "{form}");
            assert_eq!(loc(form).canonical(), "file:///tmp/wh/t", "{form}");
        }
        assert_eq!(loc("file:/tmp/wh/t/").as_str(), "file:/tmp/wh/t");
        assert_eq!(loc("FILE:/x").store(), &Store::File);
        assert_eq!(loc("file:///").canonical(), "file:///");
    }

    #[test]
    fn s3_schemes_are_one_store_and_keys_keep_empty_segments() {
        assert_eq!(loc("s3a://b/wh/t"), loc("s3://b/wh/t"));
        assert_eq!(loc("s3n://b/wh/t/").canonical(), "s3://b/wh/t");
        assert_eq!(loc("s3://b").canonical(), "s3://b");
        assert_ne!(loc("s3://b/wh//t"), loc("s3://b/wh/t"));
        assert!(loc("s3://b/wh//t").has_empty_segments());
        assert!(!loc("s3://b/wh").contains(&loc("s3://c/wh/t")));
    }

    #[test]
    fn containment_and_overlap_follow_segments() {
        let table = loc("file:///wh/db/t");
        assert!(table.contains(&loc("file:/wh/db/t/data/x.parquet")));
        assert!(!table.contains(&loc("file:///wh/db/t")));
        assert!(!table.contains(&loc("file:///wh/db/t2/x")));
        assert!(table.overlaps(&loc("/wh/db/t")));
        assert!(table.overlaps(&loc("/wh/db")));
        assert!(table.overlaps(&loc("/wh/db/t/sub")));
        assert!(!table.overlaps(&loc("/wh/db/t2")));
        assert!(!table.overlaps(&loc("s3://wh/db/t")));
        assert!(loc("s3://b").contains(&loc("s3://b/k")));
        assert!(!loc("s3://b/wh/t").contains(&loc("s3://b/wh//t/x")));
    }

    #[test]
    fn the_borrowed_check_agrees_with_parsing() {
        let outers =
            ["file:///wh/db/t", "/wh/db/t/", "s3://b/wh/t", "s3a://b", "s3://b/wh//t", "file://host/x", "../x"];
        let paths = [
            "file:/wh/db/t/data/x.parquet",
            "/wh/db/t",
            "/wh/db/t//data/../../../etc/passwd",
            "/wh/db/t/./x",
            "/wh/db/t2/x",
            "s3n://b/wh/t/x",
            "s3://b/wh/t/x",
            "s3://b/wh//t/x",
            "s3://c/wh/t/x",
            "s3://b/k",
            "file:///wh/db/t/\u{7}x",
            "",
            "http://b/wh/t/x",
        ];
        for outer in outers {
            for path in paths {
                let parsed = Location::parse(outer).is_ok_and(|o| Location::parse(path).is_ok_and(|p| o.contains(&p)));
                assert_eq!(Location::str_contains(outer, path), parsed, "{outer} ⊃ {path}");
                if let Ok(o) = Location::parse(outer) {
                    assert_eq!(o.contains_str(path), parsed, "{outer} ⊃ {path}");
                }
            }
        }
        assert!(Location::str_contains("s3://b/wh/t", "s3a://b/wh/t/x"));
        assert!(!Location::str_contains("/wh/db/t", "/wh/db/t/../t2/x"));
    }

    #[test]
    fn escapes_and_foreign_hosts_are_refused() {
        for bad in [
            "",
            "relative/path",
            "file:relative",
            "file://otherhost/tmp/x",
            "file:///wh/t/../../etc",
            "/wh/./t",
            "s3://b/wh/../x",
            "s3:///key",
            "s3://",
            "s3:b/k",
            "hdfs://nn/wh",
            "gs://b/k",
            "/tmp/a\nb",
            "s3://bad bucket/k",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Location::parse("/tmp/my table/%2e%2e").is_ok(), "names are literal, never decoded");
    }

    #[test]
    fn joins_keep_the_client_s_spelling() {
        assert_eq!(loc("file:/tmp/t/").join("metadata/v1.json"), "file:/tmp/t/metadata/v1.json");
        assert_eq!(loc("file:/tmp/t").local_path(), Some(std::path::PathBuf::from("/tmp/t")));
        assert_eq!(loc("s3://b/t").local_path(), None);
    }
}
