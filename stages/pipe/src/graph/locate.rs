//! Finding values inside RON text by path (`stages.relay.replicas`, `edges.0.slots`).
//!
//! serde keeps no position for a value, so validation errors and `--set` overrides locate
//! their value again in the source text. This is a small scanner, not a full RON parser: it
//! knows strings (plain and raw), chars, comments and bracket nesting, which is all it needs to
//! find the span of a struct field, a map entry or a list item. Text that the scanner cannot
//! follow makes the lookup fail, and the caller falls back to a place without line and column.

use std::ops::Range;

/// Result of following a path through the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The value exists at this byte range; `key` is the range of its field name, map key or,
    /// for a list item, the item itself.
    Value {
        key: Range<usize>,
        value: Range<usize>,
    },
    /// The last segment names a field that the struct at `open` (the byte after its `(`) does
    /// not set, so it takes its default; an override inserts the field there.
    MissingField { open: usize },
}

/// Reason a path cannot be followed, as a sentence fragment for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NotFound(pub String);

/// Finds `path` (segments already split on `.`) starting from the top-level value of `text`.
pub(crate) fn find(text: &str, path: &[&str]) -> Result<Found, NotFound> {
    let bytes = text.as_bytes();
    let start = skip_space(bytes, 0);
    let mut value = start..value_end(bytes, start).ok_or_else(unreadable)?;
    let mut key = value.clone();
    for (depth, segment) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let entries = entries(bytes, value.start).ok_or_else(|| {
            let walked = path[..depth].join(".");
            NotFound(format!(
                "`{walked}` has no fields to select `{segment}` from"
            ))
        })?;
        let wanted = segment.trim_matches('"');
        let hit = match entries.shape {
            Shape::List => wanted
                .parse::<usize>()
                .ok()
                .and_then(|index| entries.items.get(index)),
            Shape::Struct | Shape::Map => entries.items.iter().find(|item| {
                item.key
                    .as_ref()
                    .is_some_and(|k| unquote(&text[k.clone()]) == wanted)
            }),
        };
        match hit {
            Some(item) => {
                key = item.key.clone().unwrap_or_else(|| item.value.clone());
                value = item.value.clone();
            }
            None if last && entries.shape == Shape::Struct => {
                return Ok(Found::MissingField { open: entries.open });
            }
            None => {
                let walked = path[..depth].join(".");
                let what = match entries.shape {
                    Shape::List => format!("has {} items", entries.items.len()),
                    _ => {
                        let keys: Vec<&str> = entries
                            .items
                            .iter()
                            .filter_map(|item| item.key.as_ref().map(|k| unquote(&text[k.clone()])))
                            .collect();
                        format!("contains {}", keys.join(", "))
                    }
                };
                let walked = if walked.is_empty() {
                    "the graph".to_string()
                } else {
                    format!("`{walked}`")
                };
                return Err(NotFound(format!("{walked} has no `{segment}`; it {what}")));
            }
        }
    }
    Ok(Found::Value { key, value })
}

/// One entry of a struct, map or list: its key text (unquoted; `None` for list items), the
/// range of the key (or of the item) and the range of the value.
pub(crate) type Child = (Option<String>, Range<usize>, Range<usize>);

/// Lists the entries of the value at `path`, or `None` when it has none or cannot be scanned.
pub(crate) fn children(text: &str, path: &[&str]) -> Option<Vec<Child>> {
    let start = match find(text, path).ok()? {
        Found::Value { value, .. } => value.start,
        Found::MissingField { .. } => return None,
    };
    let entries = entries(text.as_bytes(), start)?;
    let children = entries
        .items
        .into_iter()
        .map(|item| {
            let key = item
                .key
                .as_ref()
                .map(|k| unquote(&text[k.clone()]).to_string());
            (
                key,
                item.key.unwrap_or_else(|| item.value.clone()),
                item.value,
            )
        })
        .collect();
    Some(children)
}

/// Converts a 1-based line and column (in characters) into a byte offset.
pub(crate) fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (index, content) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            let within: usize = content
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + within;
        }
        offset += content.len();
    }
    text.len()
}

/// Converts a byte offset into a 1-based line and column (in characters).
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Returns the token or value starting at byte `offset` (after whitespace), shortened to 40
/// characters, for "found ..." in messages.
pub(crate) fn token_at(text: &str, offset: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let start = skip_space(bytes, offset.min(bytes.len()));
    let end = value_end(bytes, start).unwrap_or_else(|| (start + 1).min(bytes.len()));
    let token = text.get(start..end)?.trim();
    if token.is_empty() {
        return None;
    }
    Some(token.chars().take(40).collect())
}

/// Checks that `value` is exactly one RON value, so an override cannot splice in extra fields.
pub(crate) fn is_single_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let start = skip_space(bytes, 0);
    match value_end(bytes, start) {
        Some(end) => end > start && skip_space(bytes, end) == bytes.len(),
        None => false,
    }
}

fn unreadable() -> NotFound {
    NotFound("the graph text could not be scanned".to_string())
}

fn unquote(key: &str) -> &str {
    key.trim().trim_matches('"')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Struct,
    Map,
    List,
}

struct Item {
    key: Option<Range<usize>>,
    value: Range<usize>,
}

struct Entries {
    shape: Shape,
    /// Byte just after the opening bracket.
    open: usize,
    items: Vec<Item>,
}

/// Lists the entries of the struct, map or list value starting at `start`.
fn entries(bytes: &[u8], start: usize) -> Option<Entries> {
    let mut i = start;
    // A named struct or a variant wrapping one: skip the identifier.
    if is_ident_start(bytes.get(i).copied()?) {
        i = ident_end(bytes, i);
        i = skip_space(bytes, i);
    }
    let (shape, close) = match bytes.get(i)? {
        b'(' => (Shape::Struct, b')'),
        b'{' => (Shape::Map, b'}'),
        b'[' => (Shape::List, b']'),
        _ => return None,
    };
    let open = i + 1;
    let mut items = Vec::new();
    i = skip_space(bytes, open);
    while *bytes.get(i)? != close {
        let first = i..value_end(bytes, i)?;
        i = skip_space(bytes, first.end);
        let item = if shape != Shape::List && bytes.get(i) == Some(&b':') {
            let value_start = skip_space(bytes, i + 1);
            let value = value_start..value_end(bytes, value_start)?;
            i = skip_space(bytes, value.end);
            Item {
                key: Some(first),
                value,
            }
        } else {
            // List items and tuple-struct fields have no key.
            Item {
                key: None,
                value: first,
            }
        };
        items.push(item);
        match bytes.get(i)? {
            b',' => i = skip_space(bytes, i + 1),
            &c if c == close => {}
            _ => return None,
        }
    }
    Some(Entries { shape, open, items })
}

/// Returns the end of the value that starts at `start`, or `None` on unbalanced text.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    match first {
        b'"' => string_end(bytes, start),
        b'\'' => char_end(bytes, start),
        b'r' if matches!(bytes.get(start + 1), Some(b'"' | b'#')) => raw_string_end(bytes, start),
        b'(' | b'[' | b'{' => group_end(bytes, start),
        c if is_ident_start(c) => {
            let end = ident_end(bytes, start);
            let next = skip_space(bytes, end);
            if bytes.get(next) == Some(&b'(') {
                group_end(bytes, next)
            } else {
                Some(end)
            }
        }
        _ => {
            // Numbers and other bare literals run until a separator.
            let mut i = start;
            while let Some(&c) = bytes.get(i) {
                if matches!(c, b',' | b')' | b']' | b'}' | b':') || c.is_ascii_whitespace() {
                    break;
                }
                if c == b'/' && matches!(bytes.get(i + 1), Some(b'/' | b'*')) {
                    break;
                }
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// Returns the end of the bracketed group opening at `start`.
fn group_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut stack = Vec::new();
    let mut i = start;
    loop {
        let c = *bytes.get(i)?;
        match c {
            b'(' => stack.push(b')'),
            b'[' => stack.push(b']'),
            b'{' => stack.push(b'}'),
            b')' | b']' | b'}' => {
                if stack.pop() != Some(c) {
                    return None;
                }
                if stack.is_empty() {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i = string_end(bytes, i)?;
                continue;
            }
            b'\'' => {
                i = char_end(bytes, i)?;
                continue;
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !is_ident_char(bytes[i - 1])) =>
            {
                i = raw_string_end(bytes, i)?;
                continue;
            }
            b'/' if matches!(bytes.get(i + 1), Some(b'/' | b'*')) => {
                i = comment_end(bytes, i)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

fn char_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *bytes.get(i)? {
            b'\\' => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

fn raw_string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let mut hashes = 0;
    while bytes.get(i) == Some(&b'#') {
        hashes += 1;
        i += 1;
    }
    if bytes.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    loop {
        if bytes.get(i)? == &b'"'
            && bytes[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
}

/// Returns the end of the comment at `start` (`//` to the end of the line, or nested `/* */`).
fn comment_end(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes.get(start + 1) == Some(&b'/') {
        let rest = &bytes[start..];
        return Some(
            rest.iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |p| start + p + 1),
        );
    }
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match (bytes.get(i)?, bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
}

/// Skips whitespace and comments.
fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes.get(i) {
            Some(c) if c.is_ascii_whitespace() => i += 1,
            Some(b'/') if matches!(bytes.get(i + 1), Some(b'/' | b'*')) => {
                match comment_end(bytes, i) {
                    Some(end) => i = end,
                    None => return bytes.len(),
                }
            }
            _ => return i,
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    // `r#name` raw identifiers.
    if bytes.get(i) == Some(&b'r') && bytes.get(i + 1) == Some(&b'#') {
        i += 2;
    }
    while bytes.get(i).copied().is_some_and(is_ident_char) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = r##"// a comment with ( and "
Graph(
    name: "g", /* nested /* comment */ ) */
    stages: {
        "src": Source(count: 10),
        "relay": Relay(replicas: 2, restart: OnFailure(max: 3)),
        "sink": Sink(),
    },
    edges: [
        Edge(from: "src", to: "relay", slots: 4),
        Edge(from: "relay", to: "sink", slots: r#"8"#),
    ],
)"##;

    fn text_of(path: &str) -> String {
        let segments: Vec<&str> = path.split('.').collect();
        match find(GRAPH, &segments).unwrap() {
            Found::Value { value, .. } => GRAPH[value].to_string(),
            Found::MissingField { .. } => "<missing>".to_string(),
        }
    }

    #[test]
    fn finds_struct_map_and_list_values() {
        assert_eq!(text_of("name"), "\"g\"");
        assert_eq!(text_of("stages.relay.replicas"), "2");
        assert_eq!(text_of("stages.relay.restart"), "OnFailure(max: 3)");
        assert_eq!(text_of("stages.relay.restart.max"), "3");
        assert_eq!(text_of("edges.1.from"), "\"relay\"");
        assert_eq!(text_of("edges.1.slots"), "r#\"8\"#");
        assert_eq!(text_of("stages.src"), "Source(count: 10)");
    }

    #[test]
    fn missing_struct_field_gives_insertion_point() {
        let found = find(GRAPH, &["stages", "sink", "replicas"]).unwrap();
        let Found::MissingField { open } = found else {
            panic!("expected a missing field")
        };
        assert_eq!(&GRAPH[open - 5..open], "Sink(");
    }

    #[test]
    fn unknown_map_key_lists_known_keys() {
        let err = find(GRAPH, &["stages", "nope", "replicas"]).unwrap_err();
        assert_eq!(
            err.0,
            "`stages` has no `nope`; it contains src, relay, sink"
        );
        let err = find(GRAPH, &["edges", "7"]).unwrap_err();
        assert_eq!(err.0, "`edges` has no `7`; it has 2 items");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(offset_of("ab\ncd", 2, 2), 4);
        assert_eq!(offset_of("ab\ncd", 1, 1), 0);
    }

    #[test]
    fn single_value_check() {
        assert!(is_single_value("3"));
        assert!(is_single_value(" OnFailure(max: 3) "));
        assert!(!is_single_value("3, replicas: 4"));
        assert!(!is_single_value(""));
        assert!(!is_single_value("Relay("));
    }
}
