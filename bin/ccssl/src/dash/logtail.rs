//! The last lines of a log file, read from its end so a long log costs no more than a short one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the end of the file; enough for a screen of lines of typical length.
const TAIL_BYTES: u64 = 64 * 1024;

/// Returns up to `max_lines` last lines of the file, oldest first. A missing file gives no lines,
/// because a run writes its log only once it has started.
pub fn read_tail(path: &Path, max_lines: usize) -> io::Result<Vec<String>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);

    let mut lines: Vec<&str> = text.lines().collect();
    // The first line is cut when reading started mid-file.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(max_lines);
    Ok(lines[skip..].iter().map(|l| printable(l)).collect())
}

/// Removes ANSI escape sequences (a log written with colours) and turns tabs and other control
/// characters into spaces, because the terminal would act on them instead of showing them.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI sequence: ESC [ parameters, ended by a byte in 0x40..=0x7e.
                if chars.next_if_eq(&'[').is_some() {
                    for end in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&end) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push_str("    "),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ccssl-dash-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("run.log")
    }

    #[test]
    fn last_lines_in_order() {
        let path = temp_path("tail-order");
        std::fs::write(&path, "one\ntwo\nthree\nfour\n").unwrap();
        assert_eq!(read_tail(&path, 2).unwrap(), ["three", "four"]);
        assert_eq!(read_tail(&path, 10).unwrap().len(), 4);
    }

    #[test]
    fn escapes_and_controls_are_removed() {
        let line = "\u{1b}[2m2026-12-04\u{1b}[0m \u{1b}[32mINFO\u{1b}[0m step:\tdone\r\u{7}";
        assert_eq!(printable(line), "2026-12-04 INFO step:    done  ");
    }

    #[test]
    fn missing_file_has_no_lines() {
        let lines = read_tail(Path::new("/nonexistent/ccssl/run.log"), 5).unwrap();
        assert!(lines.is_empty());
    }

    #[test]
    fn long_file_drops_cut_first_line() {
        let path = temp_path("tail-long");
        let mut file = File::create(&path).unwrap();
        for i in 0..20_000 {
            writeln!(file, "line {i:05}").unwrap();
        }
        drop(file);
        let lines = read_tail(&path, 3).unwrap();
        assert_eq!(lines, ["line 19997", "line 19998", "line 19999"]);
        let all = read_tail(&path, usize::MAX).unwrap();
        assert!(all.iter().all(|l| l.len() == 10 && l.starts_with("line ")));
    }
}
