//! Charts as server-rendered SVG, so pages draw them with JavaScript off: a line chart of
//! values over time and a horizontal bar chart of counts.

use maud::{Markup, html};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;

/// A line over `points` (time in ms, value), labelled `title`; `format` renders axis values.
pub fn line(title: &str, points: &[(i64, f64)], format: impl Fn(f64) -> String) -> Markup {
    if points.is_empty() {
        return html! { p.muted { (title) ": no data yet" } };
    }
    let (x0, x1) = (points[0].0, points.last().map_or(points[0].0, |p| p.0));
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
    let span = (x1 - x0).max(1) as f64;
    let x = |t: i64| LEFT + (t - x0) as f64 / span * (WIDTH - LEFT - 8.0);
    let y = |v: f64| TOP + (1.0 - v / max) * (HEIGHT - TOP - BOTTOM);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, (t, v))| format!("{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(*t), y(*v)))
        .collect();
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
            title { (title) }
            line x1=(LEFT) y1=(y(0.0)) x2=(WIDTH - 8.0) y2=(y(0.0)) stroke="#b9c2cc" {}
            line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(y(0.0)) stroke="#b9c2cc" {}
            text x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (format(max)) }
            text x=(LEFT - 6.0) y=(y(0.0)) text-anchor="end" { "0" }
            text x=(LEFT) y=(HEIGHT - 6.0) { (super::layout::time(x0)) }
            text x=(WIDTH - 8.0) y=(HEIGHT - 6.0) text-anchor="end" { (super::layout::time(x1)) }
            path d=(path) fill="none" stroke="#0b5cad" stroke-width="2" {}
            @if points.len() == 1 {
                circle cx=(x(points[0].0)) cy=(y(points[0].1)) r="3" fill="#0b5cad" {}
            }
        }
    }
}

/// Horizontal bars, one per `(label, value)`, labelled `title`.
pub fn bars(title: &str, rows: &[(String, f64)], format: impl Fn(f64) -> String) -> Markup {
    if rows.is_empty() {
        return html! { p.muted { (title) ": nothing to show" } };
    }
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let row_height = 22.0;
    let height = rows.len() as f64 * row_height + 8.0;
    let label_width = 150.0;
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
            title { (title) }
            @for (i, (label, value)) in rows.iter().enumerate() {
                @let y = 4.0 + i as f64 * row_height;
                @let w = (value / max) * (WIDTH - label_width - 90.0);
                text x=(label_width - 6.0) y=(y + 14.0) text-anchor="end" { (label) }
                rect x=(label_width) y=(y + 3.0) width=(format!("{w:.1}")) height="14" fill="#0b5cad" rx="2" {}
                text x=(label_width + w + 6.0) y=(y + 14.0) { (format(*value)) }
            }
        }
    }
}
