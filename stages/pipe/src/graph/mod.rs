//! Graph files: the RON schema, `--set` overrides, validation into a typed [`Plan`], and
//! Graphviz output.
//!
//! A graph file looks like
//!
//! ```ron
//! Graph(
//!     name: "pipe-smoke",
//!     seed: 1,
//!     stages: {
//!         "source": Source(count: 2000),
//!         "relay": Relay(replicas: 2, restart: OnFailure(max: 3)),
//!         "sink": Sink(expect: Some(2000)),
//!     },
//!     edges: [
//!         Edge(from: "source", to: "relay", slots: 8),
//!         Edge(from: "relay", to: "sink", slots: 8),
//!     ],
//! )
//! ```
//!
//! Loading runs in two layers. [`RawGraph`] mirrors the file with `deny_unknown_fields`, so a
//! misspelt field is an error and not a silent default. [`load`] then checks every rule that
//! serde cannot express and returns a [`Plan`] that the supervisor can launch without further
//! checks. Every error names the file, line and column where there is one, the stage or edge,
//! the bad value and what is accepted.
//!
//! The set of stage kinds is a type parameter. This crate defines [`PipeStage`] (the test
//! stages and `Exec`). A binary with more kinds defines its own enum and implements
//! [`StageSpec`] for it, reusing the config structs of this module for the kinds it shares.

mod builtin;
mod dot;
mod error;
mod host;
mod locate;
mod overrides;
mod validate;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use builtin::{ExecConfig, PipeStage, RelayConfig, SinkConfig, SourceConfig};
pub use dot::to_dot;
pub use error::{GraphError, Place};
pub use host::shm_free_bytes;
pub use validate::{EdgePlan, Plan, Program, StagePlan};

/// Most replicas one stage may have.
pub const MAX_REPLICAS: u32 = 64;
/// Most slots one ring may have.
pub const MAX_SLOTS: u32 = 4096;
/// Largest slot, in bytes (1 GiB).
pub const MAX_SLOT_BYTES: u64 = 1 << 30;
/// Most restarts `OnFailure(max: N)` may allow.
pub const MAX_RESTARTS: u32 = 1000;

/// Policy of the supervisor for a failed stage process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Restart {
    /// A failed stage fails the run.
    #[default]
    Never,
    /// Respawn a failed replica up to `max` times in the whole run, then fail the run.
    OnFailure {
        /// Respawns allowed, 1 to [`MAX_RESTARTS`].
        max: u32,
    },
}

/// How many edges a stage kind accepts on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Minimum and maximum number of input edges.
    pub inputs: (usize, usize),
    /// Minimum and maximum number of output edges.
    pub outputs: (usize, usize),
}

/// A problem that a stage kind finds in its own config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// Path of the offending field below the stage, such as `count` or `restart.max`; empty for
    /// the stage as a whole.
    pub field: String,
    /// The bad value and what is accepted.
    pub message: String,
}

/// The set of stage kinds a graph may use.
///
/// Implemented by an enum whose variants wrap one config struct each (`Relay(RelayConfig)`);
/// RON's `unwrap_variant_newtypes` extension lets the file write `Relay(replicas: 2)`.
pub trait StageSpec: DeserializeOwned + Serialize + Clone + fmt::Debug {
    /// Kind name as written in graph files (`Relay`).
    fn kind(&self) -> &'static str;
    /// Replica count the config sets (1 when the kind has no such setting).
    fn replicas(&self) -> u32;
    /// Restart policy the config sets.
    fn restart(&self) -> Restart;
    /// Returns whether the stage carries state from one item to the next, which rules out replicas and
    /// restarts.
    fn stateful(&self) -> bool;
    /// Edges the kind accepts.
    fn ports(&self) -> Ports;
    /// Returns the bytes each output slot needs, if the kind fixes them; an edge without
    /// `slot_bytes` uses this size.
    fn output_slot_bytes(&self) -> Option<u64>;
    /// Returns the bytes each output slot needs when they depend on the stages upstream;
    /// `upstream` holds the spec of the stage feeding each input edge, in input order.
    ///
    /// Validation uses this size for output edges without `slot_bytes` and rejects an edge
    /// whose `slot_bytes` is smaller. An error rejects the graph (for example when the
    /// upstream stage cannot tell the size of its items). The default is
    /// [`output_slot_bytes`](Self::output_slot_bytes).
    fn output_slot_bytes_after(&self, upstream: &[&Self]) -> Result<Option<u64>, SpecProblem> {
        let _ = upstream;
        Ok(self.output_slot_bytes())
    }
    /// Checks the kind's own fields.
    fn check(&self) -> Result<(), SpecProblem>;
    /// Returns the external program, for a stage that runs one.
    fn exec(&self) -> Option<&ExecConfig>;
}

/// A graph file as written, before validation.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename = "Graph", bound = "S: StageSpec")]
pub struct RawGraph<S> {
    /// Run name: letters, digits, `_`, `-` and `.`; it names the run directory.
    pub name: String,
    /// Seed of every random choice in the run.
    #[serde(default)]
    pub seed: u64,
    /// Parent of run directories; `runs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Stages by name, in file order.
    pub stages: StageMap<S>,
    /// Rings between stages.
    #[serde(default)]
    pub edges: Vec<RawEdge>,
}

/// One edge as written: a ring from `from` to `to` (one ring per replica pair).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename = "Edge")]
pub struct RawEdge {
    /// Producing stage.
    pub from: String,
    /// Consuming stage.
    pub to: String,
    /// Slots per ring, 1 to [`MAX_SLOTS`].
    pub slots: u32,
    /// Bytes per slot, 1 to [`MAX_SLOT_BYTES`]; the producer's own need when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_bytes: Option<u64>,
}

/// Stage entries in file order. Unlike a `BTreeMap` it keeps a repeated name, so validation
/// can reject it instead of letting the later entry win silently.
#[derive(Clone, Debug)]
pub struct StageMap<S>(pub Vec<(String, S)>);

impl<'de, S: Deserialize<'de>> Deserialize<'de> for StageMap<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<S>(PhantomData<S>);
        impl<'de, S: Deserialize<'de>> Visitor<'de> for EntriesVisitor<S> {
            type Value = StageMap<S>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from stage name to stage, such as { \"relay\": Relay() }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, S>()? {
                    entries.push(entry);
                }
                Ok(StageMap(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

impl<S: Serialize> Serialize for StageMap<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, stage) in &self.0 {
            map.serialize_entry(name, stage)?;
        }
        map.end()
    }
}

/// RON options every graph is read and written with: `Relay(replicas: 2)` for a variant that
/// wraps a config struct, and `slot_bytes: 4096` for an optional value.
pub fn ron_options() -> ron::Options {
    use ron::extensions::Extensions;
    ron::Options::default()
        .with_default_extension(Extensions::UNWRAP_VARIANT_NEWTYPES | Extensions::IMPLICIT_SOME)
}

/// Reads, overrides and validates the graph in `file`.
///
/// `overrides` are `PATH=VALUE` strings as given to `--set`; `VALUE` is RON text that replaces
/// the value at `PATH` (or is inserted when a struct leaves that field at its default).
pub fn load<S: StageSpec>(file: &Path, overrides: &[String]) -> Result<Plan<S>, GraphError> {
    let text = std::fs::read_to_string(file).map_err(|source| GraphError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    load_str(file, &text, overrides)
}

/// Like [`load`], for graph text already in memory; `file` only names it in messages and
/// anchors relative `Exec` program paths.
pub fn load_str<S: StageSpec>(
    file: &Path,
    text: &str,
    overrides: &[String],
) -> Result<Plan<S>, GraphError> {
    let source = overrides::apply(text, overrides)?;
    let raw: RawGraph<S> = ron_options()
        .from_str(&source.text)
        .map_err(|err| validate::syntax_error(file, &source, &err))?;
    validate::validate(file, source, raw)
}

/// Writes a graph back as RON, with defaults filled in.
pub fn to_ron<S: StageSpec>(graph: &RawGraph<S>) -> String {
    let pretty = ron::ser::PrettyConfig::new().struct_names(true);
    ron_options()
        .to_string_pretty(graph, pretty)
        .unwrap_or_else(|err| format!("// the graph could not be written as RON: {err}\n"))
}

#[cfg(test)]
mod tests;
