//! Command-line behaviour of `ccssl` and `ccssl-run` on valid input: `graph check`,
//! `graph dot`, help. Bad input is covered by the `ccssl-tests` crate.

use std::path::PathBuf;
use std::process::Command;

fn smoke_graph() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../graphs/pipe-smoke.ron")
}

#[test]
fn graph_check_accepts_smoke_graph() {
    let output = Command::new(env!("CARGO_BIN_EXE_ccssl"))
        .args(["graph", "check"])
        .arg(smoke_graph())
        .output()
        .expect("run ccssl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("valid graph \"pipe-smoke\": 3 stages (4 processes), 2 edges (4 rings"),
        "{stdout}"
    );
}

#[test]
fn graph_dot_prints_digraph_with_override() {
    let output = Command::new(env!("CARGO_BIN_EXE_ccssl"))
        .args(["graph", "dot", "--set", "stages.relay.replicas=3"])
        .arg(smoke_graph())
        .output()
        .expect("run ccssl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("digraph \"pipe-smoke\" {\n"), "{stdout}");
    assert!(
        stdout.contains("\"relay\" [label=\"relay\\nRelay\\nreplicas 3\\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\"source\" -> \"relay\""), "{stdout}");
    assert!(stdout.trim_end().ends_with('}'), "{stdout}");
}

#[test]
fn run_help_lists_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_ccssl-run"))
        .arg("--help")
        .output()
        .expect("run ccssl-run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    for flag in ["--set <PATH=VALUE>", "--out <DIR>", "--headless"] {
        assert!(stdout.contains(flag), "missing {flag} in:\n{stdout}");
    }
    // The `stage` subcommand of re-executed stage processes is hidden.
    assert!(!stdout.contains("Commands:"), "{stdout}");
}
