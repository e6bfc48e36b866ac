//! Validation of a parsed graph into a [`Plan`].
//!
//! Checks run in a fixed order (graph fields, stages in file order, edges in file order,
//! stage ports, cycles, shared memory), and the first failure is the one reported, so a given
//! bad graph always gives the same single message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{GraphError, Place};
use super::host;
use super::locate::{self, Found};
use super::overrides::Source;
use super::{MAX_REPLICAS, MAX_RESTARTS, MAX_SLOT_BYTES, MAX_SLOTS, RawGraph, Restart, StageSpec};
use crate::ring::{self, RingConfig};

/// A validated graph, ready to launch.
#[derive(Clone, Debug)]
pub struct Plan<S> {
    /// Graph file as given.
    pub file: PathBuf,
    /// Graph text after `--set` overrides.
    pub text: String,
    /// The parsed graph, with defaults filled in.
    pub graph: RawGraph<S>,
    /// Stages in file order.
    pub stages: Vec<StagePlan<S>>,
    /// Stage indices in topological order: producers before their consumers.
    pub order: Vec<usize>,
    /// Edges in file order.
    pub edges: Vec<EdgePlan>,
}

/// A validated stage.
#[derive(Clone, Debug)]
pub struct StagePlan<S> {
    /// Stage name: a letter, then letters, digits, `_` or `-`.
    pub name: String,
    /// The stage's config.
    pub spec: S,
    /// Processes running this stage, 1 to [`MAX_REPLICAS`].
    pub replicas: u32,
    /// Restart policy; always `Never` for a stateful stage.
    pub restart: Restart,
    /// Program the supervisor starts for each replica.
    pub program: Program,
    /// Indices into [`Plan::edges`] of the edges into this stage, in file order.
    pub inputs: Vec<usize>,
    /// Indices into [`Plan::edges`] of the edges out of this stage, in file order.
    pub outputs: Vec<usize>,
}

/// The program behind a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The supervisor's own binary, re-executed with its hidden `stage` subcommand.
    Builtin,
    /// An external program.
    Exec {
        /// Resolved path of an existing executable file.
        path: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// A validated edge. It is carried by `from.replicas * to.replicas` rings, one per pair of
/// producer and consumer replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgePlan {
    /// Producing stage.
    pub from: String,
    /// Consuming stage.
    pub to: String,
    /// Replicas of the producer.
    pub from_replicas: u32,
    /// Replicas of the consumer.
    pub to_replicas: u32,
    /// Slots per ring.
    pub slots: u32,
    /// Bytes per slot.
    pub slot_bytes: u64,
}

impl EdgePlan {
    /// Edge name, `from-to`, as used in messages and logs.
    pub fn name(&self) -> String {
        format!("{}-{}", self.from, self.to)
    }

    /// Ring name for the pair of producer replica `from_replica` and consumer replica
    /// `to_replica`, `from.P-to.C`; stage names contain no `.`, so the name is unambiguous.
    pub fn ring_name(&self, from_replica: u32, to_replica: u32) -> String {
        format!("{}.{from_replica}-{}.{to_replica}", self.from, self.to)
    }

    /// Shared memory of all rings of this edge, in bytes.
    pub fn shm_bytes(&self) -> u64 {
        let config = RingConfig {
            slot_size: usize::try_from(self.slot_bytes).unwrap_or(usize::MAX),
            slot_count: self.slots,
        };
        // Sizes past the ring's limits are rejected before this is called; saturate anyway.
        let ring = ring::segment_len(config).unwrap_or(u64::MAX);
        ring.saturating_mul(u64::from(self.from_replicas) * u64::from(self.to_replicas))
    }
}

impl<S> Plan<S> {
    /// Index of the stage called `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Run name.
    pub fn name(&self) -> &str {
        &self.graph.name
    }
}

/// Context for building errors that point into the graph text.
pub(super) struct Checker<'a> {
    file: &'a Path,
    source: &'a Source,
}

impl Checker<'_> {
    /// Place of the value at `path`, falling back to its nearest located parent.
    fn place(&self, path: &[&str]) -> Place {
        for len in (1..=path.len()).rev() {
            if let Ok(Found::Value { value, .. }) = locate::find(&self.source.text, &path[..len]) {
                return self.place_at(value.start);
            }
        }
        Place::File {
            file: self.file.to_path_buf(),
        }
    }

    fn place_at(&self, offset: usize) -> Place {
        if let Some(assignment) = self.source.override_at(offset) {
            return Place::Override {
                assignment: assignment.to_string(),
            };
        }
        let (line, column) = locate::line_column(&self.source.text, offset);
        Place::Position {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    pub(super) fn invalid(&self, path: &[&str], subject: String, message: String) -> GraphError {
        GraphError::Invalid {
            place: self.place(path),
            subject,
            message,
        }
    }
}

/// Turns a RON parse error into a [`GraphError`] naming the stage or edge it lies in.
pub(super) fn syntax_error(
    file: &Path,
    source: &Source,
    err: &ron::error::SpannedError,
) -> GraphError {
    let offset = locate::offset_of(&source.text, err.position.line, err.position.col);
    let checker = Checker { file, source };
    let place = checker.place_at(offset);
    let mut subject = String::new();
    if let Some(stages) = locate::children(&source.text, &["stages"])
        && let Some((Some(name), _, _)) = stages
            .iter()
            .find(|(_, key, value)| key.start <= offset && offset <= value.end)
    {
        subject = format!("stage \"{name}\": ");
    }
    if let Some(edges) = locate::children(&source.text, &["edges"])
        && let Some(index) = edges
            .iter()
            .position(|(_, _, value)| value.start <= offset && offset <= value.end)
    {
        subject = format!("{}: ", edge_subject(&source.text, index));
    }
    let mut message = describe_ron_error(&err.code);
    if message.starts_with("expected ")
        && let Some(token) = locate::token_at(&source.text, offset)
    {
        message = format!("{message}, found `{token}`");
    }
    GraphError::Syntax {
        place,
        subject,
        message,
    }
}

/// Names edge `index` by its endpoints as written (`edge "a -> b"`), or by index when they
/// cannot be read.
fn edge_subject(text: &str, index: usize) -> String {
    let index_text = index.to_string();
    let field = |name: &str| match locate::find(text, &["edges", &index_text, name]) {
        Ok(Found::Value { value, .. }) => Some(text[value].trim_matches('"').to_string()),
        _ => None,
    };
    match (field("from"), field("to")) {
        (Some(from), Some(to)) => format!("edge \"{from} -> {to}\""),
        _ => format!("edge {index}"),
    }
}

/// Words a RON error as a lowercase message with what is accepted, without Rust type names.
fn describe_ron_error(code: &ron::Error) -> String {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match code {
        ron::Error::NoSuchEnumVariant {
            expected, found, ..
        } => {
            format!("unknown kind `{found}`; expected one of {}", list(expected))
        }
        ron::Error::NoSuchStructField {
            expected, found, ..
        } => {
            format!(
                "unknown field `{found}`; expected one of {}",
                list(expected)
            )
        }
        ron::Error::MissingStructField { field, .. } => {
            format!("missing field `{field}`; expected `{field}: VALUE`")
        }
        ron::Error::DuplicateStructField { field, .. } => {
            format!("duplicate field `{field}`; expected it once")
        }
        ron::Error::InvalidValueForType { expected, found } => {
            format!("invalid value {found}; expected {expected}")
        }
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => "invalid RON".to_string(),
            }
        }
    }
}

/// Validates `raw` into a [`Plan`].
pub(super) fn validate<S: StageSpec>(
    file: &Path,
    source: Source,
    raw: RawGraph<S>,
) -> Result<Plan<S>, GraphError> {
    let checker = Checker {
        file,
        source: &source,
    };
    check_graph_fields(&checker, &raw)?;
    let mut stages = Vec::with_capacity(raw.stages.0.len());
    for (index, (name, spec)) in raw.stages.0.iter().enumerate() {
        stages.push(check_stage(&checker, &raw, index, name, spec)?);
    }
    let edges = check_edges(&checker, &raw, &mut stages)?;
    check_ports(&checker, &stages)?;
    let order = topological_order(&checker, &stages, &edges)?;
    let edges = fill_slot_bytes(&checker, &stages, edges, &order)?;
    host::check_shared_memory(&checker, &edges)?;
    Ok(Plan {
        file: file.to_path_buf(),
        text: source.text,
        graph: raw,
        stages,
        order,
        edges,
    })
}

fn check_graph_fields<S: StageSpec>(
    checker: &Checker,
    raw: &RawGraph<S>,
) -> Result<(), GraphError> {
    let name = &raw.name;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if !valid {
        return Err(checker.invalid(
            &["name"],
            "graph".to_string(),
            format!("invalid name {name:?}; expected 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'"),
        ));
    }
    if raw.stages.0.is_empty() {
        return Err(checker.invalid(
            &["stages"],
            "graph".to_string(),
            "no stages; expected at least one, such as \"source\": Source(count: 100)".to_string(),
        ));
    }
    Ok(())
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn check_stage<S: StageSpec>(
    checker: &Checker,
    raw: &RawGraph<S>,
    index: usize,
    name: &str,
    spec: &S,
) -> Result<StagePlan<S>, GraphError> {
    let subject = format!("stage \"{name}\"");
    if !valid_stage_name(name) {
        return Err(checker.invalid(
            &["stages", name],
            subject,
            "invalid stage name; expected 1 to 32 letters, digits, '_' or '-', starting with a letter".to_string(),
        ));
    }
    if raw.stages.0[..index].iter().any(|(other, _)| other == name) {
        // Point at the repeated key, not the first one.
        let place = locate::children(&checker.source.text, &["stages"])
            .and_then(|c| {
                c.into_iter()
                    .filter(|(k, _, _)| k.as_deref() == Some(name))
                    .nth(1)
            })
            .map_or_else(
                || checker.place(&["stages"]),
                |(_, key, _)| checker.place_at(key.start),
            );
        return Err(GraphError::Invalid {
            place,
            subject,
            message: "duplicate stage name; expected each stage name once".to_string(),
        });
    }
    check_replication(checker, name, spec)?;

    if let Err(problem) = spec.check() {
        let mut p = vec!["stages", name];
        p.extend(problem.field.split('.').filter(|s| !s.is_empty()));
        return Err(checker.invalid(&p, subject, problem.message));
    }
    let program = match spec.exec() {
        None => Program::Builtin,
        Some(exec) => {
            let path = host::resolve_program(checker.file, &exec.program).map_err(|message| {
                checker.invalid(&["stages", name, "program"], subject.clone(), message)
            })?;
            Program::Exec {
                path,
                args: exec.args.clone(),
            }
        }
    };
    Ok(StagePlan {
        name: name.to_string(),
        spec: spec.clone(),
        replicas: spec.replicas(),
        restart: spec.restart(),
        program,
        inputs: Vec::new(),
        outputs: Vec::new(),
    })
}

/// Checks `replicas` and `restart` of a stage against its kind.
fn check_replication<S: StageSpec>(
    checker: &Checker,
    name: &str,
    spec: &S,
) -> Result<(), GraphError> {
    let subject = format!("stage \"{name}\"");
    let path = |field: &'static str| -> Vec<&str> {
        let mut p = vec!["stages", name];
        p.extend(field.split('.'));
        p
    };
    let replicas = spec.replicas();
    if replicas == 0 || replicas > MAX_REPLICAS {
        return Err(checker.invalid(
            &path("replicas"),
            subject,
            format!("invalid replicas {replicas}; expected 1 to {MAX_REPLICAS}"),
        ));
    }
    let kind = spec.kind();
    if spec.stateful() && replicas > 1 {
        return Err(checker.invalid(
            &path("replicas"),
            subject,
            format!("replicas {replicas} on a stateful {kind} stage; expected 1, because only stateless stages can be replicated"),
        ));
    }
    if let Restart::OnFailure { max } = spec.restart() {
        if spec.stateful() {
            return Err(checker.invalid(
                &path("restart"),
                subject,
                format!("restart OnFailure(max: {max}) on a stateful {kind} stage; expected Never, because a respawned stateful stage would lose its state"),
            ));
        }
        if max == 0 || max > MAX_RESTARTS {
            return Err(checker.invalid(
                &path("restart.max"),
                subject,
                format!("invalid restart max {max}; expected 1 to {MAX_RESTARTS}"),
            ));
        }
    }
    Ok(())
}

fn check_edges<S: StageSpec>(
    checker: &Checker,
    raw: &RawGraph<S>,
    stages: &mut [StagePlan<S>],
) -> Result<Vec<EdgePlan>, GraphError> {
    let index_of: HashMap<&str, usize> = raw
        .stages
        .0
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let known = || {
        raw.stages
            .0
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut edges: Vec<EdgePlan> = Vec::with_capacity(raw.edges.len());
    for (i, edge) in raw.edges.iter().enumerate() {
        let index = i.to_string();
        let path = |field: &'static str| -> Vec<&str> { vec!["edges", index.as_str(), field] };
        let subject = format!("edge \"{} -> {}\"", edge.from, edge.to);
        let Some(&from) = index_of.get(edge.from.as_str()) else {
            return Err(checker.invalid(
                &path("from"),
                subject,
                format!(
                    "no stage named {:?}; expected one of {}",
                    edge.from,
                    known()
                ),
            ));
        };
        let Some(&to) = index_of.get(edge.to.as_str()) else {
            return Err(checker.invalid(
                &path("to"),
                subject,
                format!("no stage named {:?}; expected one of {}", edge.to, known()),
            ));
        };
        if from == to {
            return Err(checker.invalid(
                &path("to"),
                subject,
                "edge from a stage to itself; expected two different stages".to_string(),
            ));
        }
        if edges.iter().any(|e| e.from == edge.from && e.to == edge.to) {
            return Err(checker.invalid(
                &["edges", index.as_str()],
                subject,
                "duplicate edge; expected at most one edge between two stages".to_string(),
            ));
        }
        if edge.slots == 0 || edge.slots > MAX_SLOTS {
            return Err(checker.invalid(
                &path("slots"),
                subject,
                format!("invalid slots {}; expected 1 to {MAX_SLOTS}", edge.slots),
            ));
        }
        if let Some(bytes) = edge.slot_bytes {
            if bytes == 0 || bytes > MAX_SLOT_BYTES {
                return Err(checker.invalid(
                    &path("slot_bytes"),
                    subject,
                    format!("invalid slot_bytes {bytes}; expected 1 to {MAX_SLOT_BYTES} (1 GiB)"),
                ));
            }
            if let Some(need) = stages[from]
                .spec
                .output_slot_bytes()
                .filter(|&need| bytes < need)
            {
                return Err(checker.invalid(
                    &path("slot_bytes"),
                    subject,
                    format!("slot_bytes {bytes} is smaller than the {need} bytes stage \"{}\" writes per item; expected at least {need}", edge.from),
                ));
            }
        }
        stages[from].outputs.push(i);
        stages[to].inputs.push(i);
        edges.push(EdgePlan {
            from: edge.from.clone(),
            to: edge.to.clone(),
            from_replicas: stages[from].replicas,
            to_replicas: stages[to].replicas,
            slots: edge.slots,
            // Filled in by `fill_slot_bytes` once the order of stages is known.
            slot_bytes: edge.slot_bytes.unwrap_or(0),
        });
    }
    Ok(edges)
}

fn check_ports<S: StageSpec>(checker: &Checker, stages: &[StagePlan<S>]) -> Result<(), GraphError> {
    let describe = |(min, max): (usize, usize)| match (min, max) {
        (0, 0) => "none".to_string(),
        (min, usize::MAX) => format!("at least {min}"),
        (min, max) if min == max => format!("exactly {min}"),
        (min, max) => format!("{min} to {max}"),
    };
    for stage in stages {
        let ports = stage.spec.ports();
        let kind = stage.spec.kind();
        for (side, count, range) in [
            ("input", stage.inputs.len(), ports.inputs),
            ("output", stage.outputs.len(), ports.outputs),
        ] {
            if count < range.0 || count > range.1 {
                return Err(checker.invalid(
                    &["stages", &stage.name],
                    format!("stage \"{}\"", stage.name),
                    format!(
                        "{count} {side} edges; a {kind} stage takes {}",
                        describe(range)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Orders stages producers first (Kahn's algorithm), or reports a cycle.
fn topological_order<S>(
    checker: &Checker,
    stages: &[StagePlan<S>],
    edges: &[EdgePlan],
) -> Result<Vec<usize>, GraphError> {
    let index_of = |name: &str| stages.iter().position(|s| s.name == name).unwrap_or(0);
    let mut pending: Vec<usize> = stages.iter().map(|s| s.inputs.len()).collect();
    let mut ready: Vec<usize> = (0..stages.len())
        .filter(|&i| pending[i] == 0)
        .rev()
        .collect();
    let mut order = Vec::with_capacity(stages.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &e in stages[i].outputs.iter().rev() {
            let to = index_of(&edges[e].to);
            pending[to] -= 1;
            if pending[to] == 0 {
                ready.push(to);
            }
        }
    }
    if order.len() == stages.len() {
        return Ok(order);
    }
    // Every stage left has an unvisited input from another stage left, so walking inputs
    // backwards from any of them must revisit a stage: that loop is the cycle.
    let mut at = (0..stages.len()).find(|&i| pending[i] > 0).unwrap_or(0);
    let mut path = vec![at];
    let mut closing_edge = 0;
    while let Some(&e) = stages[at]
        .inputs
        .iter()
        .find(|&&e| pending[index_of(&edges[e].from)] > 0)
    {
        closing_edge = e;
        at = index_of(&edges[e].from);
        if let Some(pos) = path.iter().position(|&p| p == at) {
            path.drain(..pos);
            break;
        }
        path.push(at);
    }
    path.reverse();
    let mut names: Vec<&str> = path.iter().map(|&i| stages[i].name.as_str()).collect();
    names.push(names[0]);
    let edge = &edges[closing_edge];
    let index = closing_edge.to_string();
    Err(checker.invalid(
        &["edges", &index],
        format!("edge \"{} -> {}\"", edge.from, edge.to),
        format!(
            "cycle {}; expected a graph without cycles",
            names.join(" -> ")
        ),
    ))
}

/// Gives every edge without `slot_bytes` the size its producer writes (which may depend on
/// the stages feeding the producer), or for a stage that forwards what it receives, the
/// largest slot of its inputs. Rejects an edge whose `slot_bytes` is below what the
/// producer writes.
fn fill_slot_bytes<S: StageSpec>(
    checker: &Checker,
    stages: &[StagePlan<S>],
    mut edges: Vec<EdgePlan>,
    order: &[usize],
) -> Result<Vec<EdgePlan>, GraphError> {
    let index_of = |name: &str| stages.iter().position(|s| s.name == name).unwrap_or(0);
    for &s in order {
        let stage = &stages[s];
        let subject = format!("stage \"{}\"", stage.name);
        let upstream: Vec<&S> = stage
            .inputs
            .iter()
            .map(|&e| &stages[index_of(&edges[e].from)].spec)
            .collect();
        let need = stage
            .spec
            .output_slot_bytes_after(&upstream)
            .map_err(|problem| {
                let mut path = vec!["stages", stage.name.as_str()];
                path.extend(problem.field.split('.').filter(|f| !f.is_empty()));
                checker.invalid(&path, subject.clone(), problem.message)
            })?;
        let inherited = stage.inputs.iter().map(|&e| edges[e].slot_bytes).max();
        for &e in &stage.outputs {
            let index = e.to_string();
            let edge = &edges[e];
            let edge_subject = format!("edge \"{} -> {}\"", edge.from, edge.to);
            if edge.slot_bytes != 0 {
                if let Some(need) = need.filter(|&need| edge.slot_bytes < need) {
                    return Err(checker.invalid(
                        &["edges", &index, "slot_bytes"],
                        edge_subject,
                        format!("slot_bytes {} is smaller than the {need} bytes stage \"{}\" writes per item; expected at least {need}", edge.slot_bytes, stage.name),
                    ));
                }
                continue;
            }
            match need.or(inherited) {
                Some(bytes) if bytes <= MAX_SLOT_BYTES => edges[e].slot_bytes = bytes,
                other => {
                    let why = match other {
                        Some(bytes) => format!(
                            "stage \"{}\" needs {bytes} bytes per slot, more than the limit of {MAX_SLOT_BYTES}",
                            stage.name
                        ),
                        None => format!(
                            "stage \"{}\" does not say how large its items are",
                            stage.name
                        ),
                    };
                    return Err(checker.invalid(
                        &["edges", &index],
                        edge_subject,
                        format!("no slot_bytes and {why}; expected slot_bytes: N with N from 1 to {MAX_SLOT_BYTES}"),
                    ));
                }
            }
        }
    }
    Ok(edges)
}
