//! Tests of loading and validating graphs through the public API.

use std::path::Path;

use super::*;

const SMOKE: &str = r#"Graph(
    name: "smoke",
    seed: 7,
    stages: {
        "source": Source(count: 100, payload_bytes: 1000),
        "relay": Relay(replicas: 2, restart: OnFailure(max: 3)),
        "sink": Sink(expect: Some(100)),
    },
    edges: [
        Edge(from: "source", to: "relay", slots: 8),
        Edge(from: "relay", to: "sink", slots: 4),
    ],
)"#;

fn load_text(text: &str, overrides: &[&str]) -> Result<Plan<PipeStage>, GraphError> {
    let owned: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    load_str(Path::new("g.ron"), text, &owned)
}

fn error_of(text: &str, overrides: &[&str]) -> String {
    load_text(text, overrides).unwrap_err().to_string()
}

#[test]
fn smoke_graph_validates() {
    let plan = load_text(SMOKE, &[]).unwrap();
    assert_eq!(plan.name(), "smoke");
    assert_eq!(plan.graph.seed, 7);
    let names: Vec<&str> = plan
        .order
        .iter()
        .map(|&i| plan.stages[i].name.as_str())
        .collect();
    assert_eq!(names, ["source", "relay", "sink"]);
    assert_eq!(plan.stages[1].replicas, 2);
    assert_eq!(plan.stages[1].restart, Restart::OnFailure { max: 3 });
    assert_eq!(
        plan.edges[0].slot_bytes,
        crate::slot::test_slot_size(1000) as u64
    );
    // A relay forwards its input, so its output edge inherits the input's slot size.
    assert_eq!(plan.edges[1].slot_bytes, plan.edges[0].slot_bytes);
    assert_eq!(plan.edges[1].ring_name(1, 0), "relay.1-sink.0");
    assert_eq!(plan.edges[1].from_replicas, 2);
}

#[test]
fn override_changes_value() {
    let plan = load_text(SMOKE, &["stages.relay.replicas=3", "edges.1.slots=16"]).unwrap();
    assert_eq!(plan.stages[1].replicas, 3);
    assert_eq!(plan.edges[1].slots, 16);
    assert_eq!(plan.edges[0].to_replicas, 3);
}

#[test]
fn override_error_names_assignment() {
    assert_eq!(
        error_of(SMOKE, &["stages.relay.replicas=0"]),
        "--set stages.relay.replicas=0: stage \"relay\": invalid replicas 0; expected 1 to 64"
    );
    let message = error_of(SMOKE, &["stages.relay.replicas=\"two\""]);
    assert!(
        message.starts_with("--set stages.relay.replicas=\"two\": stage \"relay\": "),
        "{message}"
    );
}

#[test]
fn error_names_line_and_column() {
    let text = SMOKE.replace("slots: 4", "slots: 0");
    assert_eq!(
        error_of(&text, &[]),
        "g.ron:11:48: edge \"relay -> sink\": invalid slots 0; expected 1 to 4096"
    );
}

#[test]
fn unknown_kind_and_field_are_syntax_errors() {
    let text = SMOKE.replace("Relay(replicas", "Rely(replicas");
    let message = error_of(&text, &[]);
    assert_eq!(
        message,
        "g.ron:6:22: stage \"relay\": unknown kind `Rely`; expected one of `Source`, `Relay`, `Sink`, `Exec`"
    );
    let text = SMOKE
        .replace("work_us", "x")
        .replace("Relay(replicas: 2", "Relay(replica: 2");
    let message = error_of(&text, &[]);
    assert!(message.contains("stage \"relay\": "), "{message}");
    assert!(message.contains("replica"), "{message}");
}

#[test]
fn stateful_stage_rejects_replicas_and_restart() {
    let text = SMOKE.replace("Sink(expect", "Sink(replicas: 2, expect");
    assert_eq!(
        error_of(&text, &[]),
        "g.ron:7:32: stage \"sink\": replicas 2 on a stateful Sink stage; expected 1, because only stateless stages can be replicated"
    );
    let message = error_of(SMOKE, &["stages.source.restart=OnFailure(max: 1)"]);
    assert!(message.starts_with("--set stages.source.restart=OnFailure(max: 1): stage \"source\": restart OnFailure(max: 1) on a stateful Source stage"), "{message}");
}

#[test]
fn cycle_is_named() {
    let text = r#"Graph(name: "c", stages: {
        "a": Source(count: 1), "b": Exec(program: "/bin/sh"), "c": Exec(program: "/bin/sh"),
    }, edges: [
        Edge(from: "a", to: "b", slots: 1),
        Edge(from: "b", to: "c", slots: 1),
        Edge(from: "c", to: "b", slots: 1),
    ])"#;
    assert_eq!(
        error_of(text, &[]),
        "g.ron:5:9: edge \"b -> c\": cycle c -> b -> c; expected a graph without cycles"
    );
}

#[test]
fn resolved_graph_round_trips() {
    let plan = load_text(SMOKE, &[]).unwrap();
    let text = to_ron(&plan.graph);
    assert!(text.contains("Relay("), "{text}");
    let again = load_text(&text, &[]).unwrap();
    assert_eq!(again.stages[1].spec, plan.stages[1].spec);
    assert_eq!(again.edges, plan.edges);
}

#[test]
fn dot_lists_stages_and_edges() {
    let plan = load_text(SMOKE, &[]).unwrap();
    let dot = to_dot(&plan);
    assert!(dot.starts_with("digraph \"smoke\" {"), "{dot}");
    assert!(
        dot.contains(
            "\"relay\" [label=\"relay\\nRelay\\nreplicas 2\\nrestart on failure, max 3\"];"
        ),
        "{dot}"
    );
    let edge = format!(
        "\"relay\" -> \"sink\" [label=\"4 x {} B\"];",
        crate::slot::test_slot_size(1000)
    );
    assert!(dot.contains(&edge), "{dot}");
}
