//! Graphviz output of a validated graph.

use std::fmt::Write;

use super::{Plan, Program, Restart, StageSpec};

/// Writes `plan` as a Graphviz `digraph`: one box per stage labelled with its kind, replicas
/// and restart policy, one arrow per edge labelled with its slots and slot size.
pub fn to_dot<S: StageSpec>(plan: &Plan<S>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(plan.name()));
    let _ = writeln!(out, "    rankdir=LR;");
    let _ = writeln!(out, "    node [shape=box, fontname=\"monospace\"];");
    for &i in &plan.order {
        let stage = &plan.stages[i];
        let mut label = format!("{}\\n{}", stage.name, stage.spec.kind());
        if let Program::Exec { path, .. } = &stage.program {
            let file = path.file_name().map_or_else(
                || path.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            );
            let _ = write!(label, " {file}");
        }
        if stage.replicas > 1 {
            let _ = write!(label, "\\nreplicas {}", stage.replicas);
        }
        if let Restart::OnFailure { max } = stage.restart {
            let _ = write!(label, "\\nrestart on failure, max {max}");
        }
        let _ = writeln!(out, "    {} [label={}];", quote(&stage.name), quote(&label));
    }
    for edge in &plan.edges {
        let label = format!("{} x {} B", edge.slots, edge.slot_bytes);
        let _ = writeln!(
            out,
            "    {} -> {} [label={}];",
            quote(&edge.from),
            quote(&edge.to),
            quote(&label)
        );
    }
    out.push_str("}\n");
    out
}

/// Quotes an identifier for Graphviz; `\n` sequences already in `text` stay line breaks.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}
