//! Every graph shipped under `graphs/` passes `ccssl graph check`, so a schema change that
//! breaks one of them fails here rather than in a researcher's first run.

use std::process::Command;

use ccssl_tests::{ccssl_bin, repo_root};

#[test]
fn shipped_graphs_are_valid() {
    let mut graphs: Vec<_> = std::fs::read_dir(repo_root().join("graphs"))
        .expect("list graphs/")
        .map(|entry| entry.expect("graphs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ron"))
        .collect();
    graphs.sort();
    // The paper graphs, the CPU graph and the three smoke graphs.
    assert!(
        graphs.len() >= 7,
        "expected at least 7 graphs, found {graphs:?}"
    );

    for graph in &graphs {
        let output = Command::new(ccssl_bin("ccssl"))
            .current_dir(repo_root())
            .args(["graph", "check"])
            .arg(graph)
            .output()
            .expect("run ccssl graph check");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} is invalid: {stdout}{}",
            graph.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("valid graph"),
            "{}: {stdout}",
            graph.display()
        );
    }
}
