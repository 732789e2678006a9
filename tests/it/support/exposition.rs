//! The Prometheus text format as the admin endpoints write it, parsed strictly (every line a
//! comment or a sample, names and labels well formed, no series twice).

use std::collections::HashMap;

/// Parses the text format: every line a comment or `name{labels} value`, the value a
/// float; returns `name{labels}` -> value.
pub fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line:?}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "labels in {line:?}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (label, quoted) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(!quoted.is_empty() || pair.ends_with("=\""), "{line:?}");
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "series twice: {line:?}"
        );
    }
    samples
}
