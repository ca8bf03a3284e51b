//! The page shell every dashboard page shares (title, navigation, the logout form) and small
//! formatting helpers. maud escapes every value it renders, so names and values from tables
//! and users never become markup.

use maud::{DOCTYPE, Markup, html};

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Overview,
    /// `/catalogs`.
    Catalogs,
    /// `/tables`.
    Tables,
    /// `/optimizing`.
    Optimizing,
    /// `/terminal`.
    Terminal,
    /// `/settings`.
    Settings,
}

const ITEMS: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Catalogs, "/catalogs", "Catalogs"),
    (Nav::Tables, "/tables", "Tables"),
    (Nav::Optimizing, "/optimizing", "Optimizing"),
    (Nav::Terminal, "/terminal", "Terminal"),
    (Nav::Settings, "/settings", "Settings"),
];

/// Who is looking, and the token their forms carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The logged-in user.
    pub user: String,
    /// The session's CSRF token.
    pub csrf: String,
}

impl Viewer {
    /// The hidden field every form of the session carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// A whole page: `title` (also the tab's title), the navigation with `active` marked, `body`.
pub fn page(viewer: &Viewer, title: &str, active: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "Loch" }
                    nav aria-label="Sections" {
                        ul {
                            @for (nav, href, label) in ITEMS {
                                li {
                                    @if nav == active {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.logout method="post" action="/logout" {
                        (viewer.csrf_field())
                        span.user { (viewer.user) }
                        button type="submit" { "Log out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page without navigation (login, errors before login).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { (body) } }
        }
    }
}

/// The `<head>` of every page.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Loch" }
            link rel="stylesheet" href="/static/dashboard.css";
        }
    }
}

/// Bytes in binary units, one decimal.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A count with thousands separators.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A time (ms since the epoch) as UTC text.
pub fn time(ms: i64) -> String {
    let Ok(ms) = u64::try_from(ms) else { return "—".into() };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string().replace('T', " ").replace('Z', " UTC")
}

/// A duration in ms as `1h 2m`, `3.4 s` or `120 ms`.
pub fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000),
        ms if ms < 86_400_000 => format!("{}h {}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
        ms => format!("{}d {}h", ms / 86_400_000, (ms % 86_400_000) / 3_600_000),
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Percent-encodes one path segment (or query value) of a dashboard link.
pub fn seg(text: &str) -> String {
    loch_sql::http::encode(text)
}

/// A table's page (`tab` empty: its first tab).
pub fn table_href(catalog: &str, namespace: &[String], table: &str, tab: &str) -> String {
    let base = format!("/tables/{}/{}/{}", seg(catalog), seg(&namespace.join(".")), seg(table));
    if tab.is_empty() { base } else { format!("{base}?tab={tab}") }
}

/// One page of a long list: which rows to show and the links to the others.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// 1-based page.
    pub page: usize,
    /// Rows per page.
    pub per_page: usize,
    /// Rows in all.
    pub total: usize,
}

impl Paging {
    /// Page `page` (clamped) of `total` rows, `per_page` each.
    pub fn new(page: Option<usize>, per_page: usize, total: usize) -> Self {
        let pages = total.div_ceil(per_page).max(1);
        Self { page: page.unwrap_or(1).clamp(1, pages), per_page, total }
    }

    /// The index range of the rows shown.
    pub fn range(&self) -> std::ops::Range<usize> {
        let start = (self.page - 1) * self.per_page;
        start.min(self.total)..(start + self.per_page).min(self.total)
    }

    /// "Rows a–b of n" and previous / next links; `href(page)` builds a page's link.
    pub fn nav(&self, href: impl Fn(usize) -> String) -> Markup {
        let range = self.range();
        let pages = self.total.div_ceil(self.per_page).max(1);
        html! {
            nav.pager aria-label="Pages" {
                @if self.total == 0 {
                    span { "None" }
                } @else {
                    span { "Rows " (count(range.start as i64 + 1)) "–" (count(range.end as i64)) " of " (count(self.total as i64)) }
                }
                @if self.page > 1 { a href=(href(self.page - 1)) rel="prev" { "← Previous" } }
                @if self.page < pages { a href=(href(self.page + 1)) rel="next" { "Next →" } }
            }
        }
    }
}

/// A key–value list.
pub fn facts<'a>(rows: impl IntoIterator<Item = (&'a str, Markup)>) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows {
                dt { (k) }
                dd { (v) }
            }
        }
    }
}

/// A notice box; `kind` is `info`, `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> Markup {
    html! { p class={ "notice " (kind) } role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

/// The dashboard's stylesheet.
pub const CSS: &str = include_str!("dashboard.css");
