//! Automatic tags (Amoro's `auto-create-tags`): once a period (a day or an hour, in UTC) has
//! passed its trigger time (its start plus `tag.auto-create.trigger.offset.minutes`), the first
//! snapshot committed after that time is tagged with the previous period's name
//! (`tag.auto-create.tag-format`, a Java date pattern such as `'tag-'yyyyMMdd`) — unless it came
//! more than `tag.auto-create.trigger.max-delay.minutes` late. The tag ages out after
//! `tag.auto-create.max-age-ms` when that is set.

use chrono::{DateTime, Datelike, Duration as Span, TimeZone, Timelike, Utc};
use iceberg::spec::{SnapshotReference, SnapshotRetention, TableMetadata};
use iceberg::{TableRequirement, TableUpdate};
use loch_catalog::{CatalogService, TableChange};

use crate::error::{OptimizingError, Result};
use crate::maintenance::MaintenanceSummary;
use crate::properties::{Props, merge};
use crate::table::ManagedTable;

/// How often a tag is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Once a day, named after the day before.
    Daily,
    /// Once an hour, named after the hour before.
    Hourly,
}

/// A table's automatic-tag properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagProperties {
    /// `tag.auto-create.enabled` (false).
    pub enabled: bool,
    /// `tag.auto-create.trigger.period` (daily).
    pub period: Period,
    /// `tag.auto-create.trigger.offset.minutes` (0).
    pub offset_minutes: i64,
    /// `tag.auto-create.trigger.max-delay.minutes` (60; 0 or less: no limit).
    pub max_delay_minutes: i64,
    /// `tag.auto-create.tag-format` (`'tag-'yyyyMMdd` daily, `'tag-'yyyyMMddHH` hourly).
    pub format: String,
    /// `tag.auto-create.max-age-ms` (-1: kept forever).
    pub max_age_ms: i64,
}

impl TagProperties {
    /// Parses properties (a bad period, pattern or number is an error naming the property).
    pub fn parse(props: &std::collections::HashMap<&str, &str>) -> Result<Self> {
        let p = Props(props);
        let period = match p.get("tag.auto-create.trigger.period").map(str::to_ascii_lowercase).as_deref() {
            None | Some("daily") => Period::Daily,
            Some("hourly") => Period::Hourly,
            Some(other) => {
                return Err(OptimizingError::InvalidProperty(format!(
                    "tag.auto-create.trigger.period={other:?} is not daily or hourly"
                )));
            }
        };
        let default_format = match period {
            Period::Daily => "'tag-'yyyyMMdd",
            Period::Hourly => "'tag-'yyyyMMddHH",
        };
        let format = p.get("tag.auto-create.tag-format").unwrap_or(default_format).to_string();
        render(&format, Utc.timestamp_millis_opt(0).single().unwrap_or_default())
            .map_err(|e| OptimizingError::InvalidProperty(format!("tag.auto-create.tag-format={format:?}: {e}")))?;
        Ok(Self {
            enabled: p.bool("tag.auto-create.enabled", false)?,
            period,
            offset_minutes: p.num("tag.auto-create.trigger.offset.minutes", 0)?,
            max_delay_minutes: p.num("tag.auto-create.trigger.max-delay.minutes", 60)?,
            format,
            max_age_ms: p.num("tag.auto-create.max-age-ms", -1)?,
        })
    }
}

/// Renders a Java `DateTimeFormatter` pattern: `'quoted'` text, `yyyy`/`yy`, `MM`, `dd`, `HH`,
/// `mm`, `ss`; other letters are refused, anything else is copied.
pub fn render(pattern: &str, at: DateTime<Utc>) -> std::result::Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..].iter().position(|&q| q == '\'').ok_or("an unclosed quote")?;
            out.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let value = match (c, run) {
            ('y', 2) => format!("{:02}", at.year() % 100),
            ('y', _) => format!("{:04}", at.year()),
            ('M', _) => format!("{:02}", at.month()),
            ('d', _) => format!("{:02}", at.day()),
            ('H', _) => format!("{:02}", at.hour()),
            ('m', _) => format!("{:02}", at.minute()),
            ('s', _) => format!("{:02}", at.second()),
            _ => return Err(format!("the pattern letter {c:?} is not supported (y, M, d, H, m, s)")),
        };
        out.push_str(&value);
        i += run;
    }
    Ok(out)
}

/// The tag due at `now_ms`, if any: its name and the snapshot it marks.
pub fn due_tag(metadata: &TableMetadata, props: &TagProperties, now_ms: i64) -> Result<Option<(String, i64)>> {
    let now = Utc.timestamp_millis_opt(now_ms).single().ok_or_else(|| OptimizingError::Invalid("bad time".into()))?;
    let (start, previous) = match props.period {
        Period::Daily => {
            let day = now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            (day, day - Span::days(1))
        }
        Period::Hourly => {
            let hour = now.date_naive().and_hms_opt(now.hour(), 0, 0).unwrap_or_default().and_utc();
            (hour, hour - Span::hours(1))
        }
    };
    let trigger = (start + Span::minutes(props.offset_minutes)).timestamp_millis();
    if now_ms < trigger {
        return Ok(None);
    }
    let name = render(&props.format, previous).map_err(OptimizingError::InvalidProperty)?;
    if metadata.snapshot_for_ref(&name).is_some() {
        return Ok(None);
    }
    let mut after: Vec<_> = metadata.snapshots().filter(|s| s.timestamp_ms() > trigger).collect();
    after.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let Some(first) = after.first() else { return Ok(None) };
    if props.max_delay_minutes > 0 && first.timestamp_ms() - trigger > props.max_delay_minutes * 60_000 {
        return Ok(None);
    }
    Ok(Some((name, first.snapshot_id())))
}

/// Creates table `table_id`'s tag due at `now_ms`, if one is; with `dry_run`, only names it.
pub async fn auto_create_tags(
    catalogs: &CatalogService,
    table_id: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<MaintenanceSummary> {
    let (lock, table) = ManagedTable::load_locked(catalogs, table_id).await?;
    let metadata = table.table.metadata();
    let props = TagProperties::parse(&merge(&table.catalog.record.properties, metadata.properties()))?;
    let mut summary = MaintenanceSummary { dry_run, ..MaintenanceSummary::default() };
    if !props.enabled {
        summary.skipped = Some("tag.auto-create.enabled is false".into());
        return Ok(summary);
    }
    let Some((name, snapshot_id)) = due_tag(metadata, &props, now_ms)? else { return Ok(summary) };
    summary.tag_created = Some(name.clone());
    if dry_run {
        return Ok(summary);
    }
    let retention = SnapshotRetention::Tag { max_ref_age_ms: (props.max_age_ms > 0).then_some(props.max_age_ms) };
    let change = TableChange {
        ident: table.name.clone(),
        // The tag must not exist yet (a concurrent run made it).
        requirements: vec![TableRequirement::RefSnapshotIdMatch { r#ref: name.clone(), snapshot_id: None }],
        updates: vec![TableUpdate::SetSnapshotRef {
            ref_name: name.clone(),
            reference: SnapshotReference::new(snapshot_id, retention),
        }],
    };
    catalogs.commit_table_locked(&lock, &table.catalog, change).await?;
    tracing::info!(table = %table.display_name(), tag = %name, snapshot = snapshot_id, "tag created");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_patterns_render_in_utc() {
        let at = Utc.with_ymd_and_hms(2026, 11, 5, 7, 8, 9).unwrap();
        assert_eq!(render("'tag-'yyyyMMdd", at).unwrap(), "tag-20261105");
        assert_eq!(render("'tag-'yyyyMMddHH", at).unwrap(), "tag-2026110507");
        assert_eq!(render("'v'yy.MM.dd-HH:mm:ss", at).unwrap(), "v26.11.05-07:08:09");
        assert!(render("'open", at).is_err());
        assert!(render("yyyyQ", at).is_err());
    }
}
