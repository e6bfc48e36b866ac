//! `--set PATH=VALUE` overrides, applied to the graph text before parsing.
//!
//! Editing the text (rather than a parsed value tree) keeps struct and variant names, which
//! RON's generic `Value` drops, and keeps every other line where the file has it, so later
//! errors still point at the right line.

use std::ops::Range;

use super::error::GraphError;
use super::locate::{self, Found};

/// Graph text after overrides, with the byte range each override wrote.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// The text to parse.
    pub text: String,
    /// Range of each override's value in `text`, with the override as given.
    pub regions: Vec<(Range<usize>, String)>,
}

impl Source {
    /// Returns the override whose value covers byte `offset`, if any.
    pub(crate) fn override_at(&self, offset: usize) -> Option<&str> {
        self.regions
            .iter()
            .find(|(range, _)| range.start <= offset && offset <= range.end)
            .map(|(_, assignment)| assignment.as_str())
    }
}

/// Applies `overrides` in order to `text`.
pub(crate) fn apply(text: &str, overrides: &[String]) -> Result<Source, GraphError> {
    let mut source = Source {
        text: text.to_string(),
        regions: Vec::new(),
    };
    for assignment in overrides {
        apply_one(&mut source, assignment)?;
    }
    Ok(source)
}

fn apply_one(source: &mut Source, assignment: &str) -> Result<(), GraphError> {
    let fail = |message: String| GraphError::Override {
        assignment: assignment.to_string(),
        message,
    };
    let Some((path, value)) = assignment.split_once('=') else {
        return Err(fail(
            "expected PATH=VALUE, such as stages.relay.replicas=3".to_string(),
        ));
    };
    let path = path.trim();
    let value = value.trim();
    let segments: Vec<&str> = path.split('.').collect();
    if path.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(fail(format!(
            "invalid path `{path}`; expected field names, stage names and edge indices joined by `.`, such as stages.relay.replicas or edges.0.slots"
        )));
    }
    if !locate::is_single_value(value) {
        return Err(fail(format!(
            "invalid value `{value}`; expected one RON value, such as 3, \"text\" or OnFailure(max: 3)"
        )));
    }

    let found = locate::find(&source.text, &segments).map_err(|err| fail(err.0))?;
    let (edit, replacement) = match found {
        Found::Value { value: range, .. } => (range, value.to_string()),
        Found::MissingField { open } => {
            let field = segments[segments.len() - 1];
            (open..open, format!("{field}: {value}, "))
        }
    };
    let value_start = edit.start + replacement.find(value).unwrap_or(0);
    let delta = replacement.len() as isize - edit.len() as isize;
    source.text.replace_range(edit.clone(), &replacement);

    // Earlier regions after the edit move with it; a region the edit replaced is superseded.
    source.regions.retain(|(range, _)| {
        !(range.start >= edit.start && range.end <= edit.end && !edit.is_empty())
    });
    for (range, _) in &mut source.regions {
        if range.start >= edit.end {
            range.start = (range.start as isize + delta) as usize;
            range.end = (range.end as isize + delta) as usize;
        }
    }
    source.regions.push((
        value_start..value_start + value.len(),
        assignment.to_string(),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = "Graph(name: \"g\", stages: { \"r\": Relay(replicas: 2), \"s\": Sink() }, edges: [Edge(from: \"r\", to: \"s\", slots: 4)])";

    fn apply_all(overrides: &[&str]) -> Result<Source, GraphError> {
        let owned: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        apply(GRAPH, &owned)
    }

    #[test]
    fn replaces_present_value() {
        let source = apply_all(&["stages.r.replicas=3"]).unwrap();
        assert!(
            source.text.contains("Relay(replicas: 3)"),
            "{}",
            source.text
        );
        let (range, assignment) = &source.regions[0];
        assert_eq!(&source.text[range.clone()], "3");
        assert_eq!(assignment, "stages.r.replicas=3");
    }

    #[test]
    fn inserts_missing_field() {
        let source =
            apply_all(&["stages.s.restart=OnFailure(max: 2)", "edges.0.slots=16"]).unwrap();
        assert!(
            source.text.contains("Sink(restart: OnFailure(max: 2), )"),
            "{}",
            source.text
        );
        assert!(source.text.contains("slots: 16"), "{}", source.text);
        let (range, _) = &source.regions[0];
        assert_eq!(&source.text[range.clone()], "OnFailure(max: 2)");
    }

    #[test]
    fn rejects_bad_assignments() {
        let message = |o: &str| apply_all(&[o]).unwrap_err().to_string();
        assert_eq!(
            message("stages.r.replicas"),
            "--set stages.r.replicas: expected PATH=VALUE, such as stages.relay.replicas=3"
        );
        assert!(message("stages..x=1").contains("invalid path `stages..x`"));
        assert!(message("stages.r.replicas=3, x: 1").contains("expected one RON value"));
        assert_eq!(
            message("stages.nope.replicas=3"),
            "--set stages.nope.replicas=3: `stages` has no `nope`; it contains r, s"
        );
    }
}
