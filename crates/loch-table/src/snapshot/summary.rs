//! Snapshot summary totals (`total-*`), carried forward from the parent snapshot.

use std::collections::HashMap;

use iceberg::spec::Summary;

/// `(total, added, removed)` summary keys.
const TOTALS: [(&str, &str, &str); 6] = [
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-delete-files", "added-delete-files", "removed-delete-files"),
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    ("total-position-deletes", "added-position-deletes", "removed-position-deletes"),
    ("total-equality-deletes", "added-equality-deletes", "removed-equality-deletes"),
];

/// Sets every `total-*` from the parent's total plus what this snapshot added minus what it
/// removed. As in Iceberg Java, a total the parent lacks is left out rather than guessed.
pub(crate) fn update_totals(properties: &mut HashMap<String, String>, parent: Option<&Summary>) {
    let read = |map: &HashMap<String, String>, key: &str| map.get(key).and_then(|v| v.parse::<u64>().ok());
    for (total, added, removed) in TOTALS {
        let previous = match parent {
            None => Some(0),
            Some(summary) => read(&summary.additional_properties, total),
        };
        let Some(previous) = previous else {
            properties.remove(total);
            continue;
        };
        let value =
            (previous + read(properties, added).unwrap_or(0)).saturating_sub(read(properties, removed).unwrap_or(0));
        properties.insert(total.to_string(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use iceberg::spec::Operation;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn totals_add_and_subtract() {
        let parent = Summary {
            operation: Operation::Append,
            additional_properties: map(&[
                ("total-data-files", "5"),
                ("total-records", "50"),
                ("total-files-size", "500"),
            ]),
        };
        let mut props = map(&[
            ("added-data-files", "1"),
            ("deleted-data-files", "2"),
            ("added-records", "7"),
            ("deleted-records", "20"),
        ]);
        update_totals(&mut props, Some(&parent));
        assert_eq!(props["total-data-files"], "4");
        assert_eq!(props["total-records"], "37");
        assert_eq!(props["total-files-size"], "500");
        // The parent had no delete-file total: it is not invented.
        assert!(!props.contains_key("total-delete-files"));
    }

    #[test]
    fn first_snapshot_starts_from_zero() {
        let mut props = map(&[("added-data-files", "3")]);
        update_totals(&mut props, None);
        assert_eq!(props["total-data-files"], "3");
        assert_eq!(props["total-delete-files"], "0");
    }
}
