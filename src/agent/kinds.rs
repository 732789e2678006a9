//! What each built-in agent computes, as plain functions of the task text.
//!
//! Kept apart from the MCP server so the behaviour is testable without sockets and
//! deterministic: the same task always gives the same answer, so tests and the demo can
//! assert on it. No LLM, no randomness, no clock (the sleeper's waiting lives in the server).

use std::fmt::Write as _;

/// The kinds `aop agent serve --kind` offers, and `metadata.demo_kind` names in zone files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum AgentKind {
    /// Answers with its task, unchanged.
    Echo,
    /// Statistics of the numbers found in the task.
    Analyst,
    /// Turns notes (lines, or sentences) into a numbered outline.
    Writer,
    /// Waits `ms` milliseconds (default 1000) and says so; for load tests.
    Sleeper,
}

impl AgentKind {
    pub const ALL: [AgentKind; 4] = [
        AgentKind::Echo,
        AgentKind::Analyst,
        AgentKind::Writer,
        AgentKind::Sleeper,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Echo => "echo",
            AgentKind::Analyst => "analyst",
            AgentKind::Writer => "writer",
            AgentKind::Sleeper => "sleeper",
        }
    }

    /// Parses a `metadata.demo_kind` value.
    pub fn parse(text: &str) -> Option<AgentKind> {
        AgentKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The tool description an agent of this kind advertises.
    pub fn description(self) -> &'static str {
        match self {
            AgentKind::Echo => "Echoes its task back unchanged.",
            AgentKind::Analyst => {
                "Computes statistics (count, sum, mean, median, min, max, standard deviation) \
                 of the numbers found in its task."
            }
            AgentKind::Writer => {
                "Turns notes (one per line, or sentences) into a numbered outline."
            }
            AgentKind::Sleeper => {
                "Waits `ms` milliseconds (default 1000), reporting progress, then says how long \
                 it slept; for load tests."
            }
        }
    }
}

impl std::fmt::Display for AgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The numbers in `text`: integers and decimals, with an optional sign and exponent.
/// Thousands separators are not numbers of their own: `1,234` reads as 1 and 234.
pub fn numbers_in(text: &str) -> Vec<f64> {
    let bytes = text.as_bytes();
    let mut numbers = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let starts_number = bytes[index].is_ascii_digit()
            || ((bytes[index] == b'-' || bytes[index] == b'+' || bytes[index] == b'.')
                && bytes.get(index + 1).is_some_and(u8::is_ascii_digit));
        // Digits glued to a word (`Q1`, `H2O`) are part of it, and a sign glued to a word
        // (`Q-3`) is a hyphen, not a minus.
        let after_word = index > 0 && bytes[index - 1].is_ascii_alphanumeric();
        if after_word && bytes[index].is_ascii_digit() {
            while index < bytes.len() && bytes[index].is_ascii_alphanumeric() {
                index += 1;
            }
            continue;
        }
        if !starts_number || after_word {
            index += 1;
            continue;
        }
        let start = index;
        index += 1;
        let mut seen_dot = bytes[start] == b'.';
        let mut seen_exponent = false;
        while index < bytes.len() {
            let byte = bytes[index];
            let next_is_digit = bytes.get(index + 1).is_some_and(u8::is_ascii_digit);
            if byte.is_ascii_digit() {
                index += 1;
            } else if byte == b'.' && !seen_dot && !seen_exponent && next_is_digit {
                seen_dot = true;
                index += 1;
            } else if (byte == b'e' || byte == b'E') && !seen_exponent && next_is_digit {
                seen_exponent = true;
                index += 1;
            } else {
                break;
            }
        }
        if let Ok(value) = text[start..index].parse::<f64>()
            && value.is_finite()
        {
            numbers.push(value);
        }
    }
    numbers
}

/// Statistics of a list of numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Statistics {
    pub count: usize,
    pub sum: f64,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Population standard deviation.
    pub stdev: f64,
}

pub fn statistics(numbers: &[f64]) -> Option<Statistics> {
    if numbers.is_empty() {
        return None;
    }
    let count = numbers.len();
    let sum: f64 = numbers.iter().sum();
    let mean = sum / count as f64;
    let mut sorted = numbers.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if count % 2 == 1 {
        sorted[count / 2]
    } else {
        (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
    };
    let variance = numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / count as f64;
    Some(Statistics {
        count,
        sum,
        mean,
        median,
        min: sorted[0],
        max: sorted[count - 1],
        stdev: variance.sqrt(),
    })
}

/// Rounds for display: at most four decimals, no trailing zeros.
fn show(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    let text = format!("{rounded:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The analyst's answer.
pub fn analyse(task: &str) -> String {
    match statistics(&numbers_in(task)) {
        None => "No numbers found in the task; give me figures to analyse.".into(),
        Some(stats) => format!(
            "count={} sum={} mean={} median={} min={} max={} stdev={}",
            stats.count,
            show(stats.sum),
            show(stats.mean),
            show(stats.median),
            show(stats.min),
            show(stats.max),
            show(stats.stdev)
        ),
    }
}

/// The writer's answer: a title from the first note, then the rest as numbered points.
/// Notes are the task's non-empty lines; a single line is split into sentences.
pub fn outline(task: &str) -> String {
    let mut notes: Vec<String> = task
        .lines()
        .map(|line| line.trim().trim_start_matches(['-', '*', '•']).trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if notes.len() == 1 {
        notes = split_sentences(&notes[0]);
    }
    if notes.is_empty() {
        return "No notes found in the task; give me something to outline.".into();
    }
    let title = capitalise(notes.remove(0).trim_end_matches(['.', ';']));
    let mut text = format!("# {title}\n");
    for (index, note) in notes.iter().enumerate() {
        let _ = write!(
            text,
            "\n{}. {}",
            index + 1,
            capitalise(note.trim_end_matches(['.', ';']))
        );
    }
    text
}

fn split_sentences(line: &str) -> Vec<String> {
    line.split(['.', ';', '!', '?'])
        .map(str::trim)
        .filter(|sentence| !sentence.is_empty())
        .map(str::to_string)
        .collect()
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_with_signs_decimals_and_exponents() {
        assert_eq!(
            numbers_in("revenue 12.5, costs -3 and 1e3; Q-3 growth +.5 x"),
            vec![12.5, -3.0, 1000.0, 3.0, 0.5]
        );
        assert_eq!(
            numbers_in("Q1 revenue 120, Q2 135, H2O 7"),
            vec![120.0, 135.0, 7.0]
        );
        assert_eq!(numbers_in("1,234"), vec![1.0, 234.0]);
        assert!(numbers_in("no figures here").is_empty());
    }

    #[test]
    fn analyst_reports_statistics() {
        assert_eq!(
            analyse("Quarterly sales: 10, 20, 30, 40"),
            "count=4 sum=100 mean=25 median=25 min=10 max=40 stdev=11.1803"
        );
        assert_eq!(
            analyse("3 1 2"),
            "count=3 sum=6 mean=2 median=2 min=1 max=3 stdev=0.8165"
        );
        assert!(analyse("nothing").starts_with("No numbers"));
    }

    #[test]
    fn writer_outlines_lines_or_sentences() {
        assert_eq!(
            outline("launch plan\n- hire two engineers\n- ship the beta;\n"),
            "# Launch plan\n\n1. Hire two engineers\n2. Ship the beta"
        );
        assert_eq!(
            outline("q3 review. revenue up. costs down"),
            "# Q3 review\n\n1. Revenue up\n2. Costs down"
        );
        assert!(outline("  \n ").starts_with("No notes"));
    }

    #[test]
    fn kinds_parse_from_their_names() {
        for kind in AgentKind::ALL {
            assert_eq!(AgentKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AgentKind::parse("oracle"), None);
    }
}
