//! Stage kinds defined in this crate: the test stages and `Exec`.

use serde::{Deserialize, Serialize};

use super::{Ports, Restart, SpecProblem, StageSpec};

/// Largest payload a test source may send per item (64 MiB).
pub const MAX_TEST_PAYLOAD: u32 = 64 << 20;

fn one() -> u32 {
    1
}

fn default_payload_bytes() -> u32 {
    4096
}

/// `Source`: emits `count` checksummed test payloads with sequence numbers `0..count`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Payloads to emit, at least 1.
    pub count: u64,
    /// Largest payload in bytes; sizes vary with the sequence number from 1 up to this.
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: u32,
    /// Must stay 1: a source numbers its items itself.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Must stay `Never`: a respawned source would not know where it stopped.
    #[serde(default)]
    pub restart: Restart,
}

/// `Relay`: checks each payload's checksum and forwards it unchanged. Stateless, so it may be
/// replicated and restarted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Processes running this stage, 1 to 64; item `seq` goes to replica `seq % replicas`.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Restart policy for a failed replica.
    #[serde(default)]
    pub restart: Restart,
    /// Simulated work per item, in microseconds (sleeps; 0 for none).
    #[serde(default)]
    pub work_us: u64,
}

/// `Sink`: checks every payload and that sequence numbers arrive once each, in order, then
/// writes a summary (`<stage>.summary` in the run directory).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Must stay 1: the sink counts the whole stream.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Must stay `Never`: a respawned sink would lose its counts.
    #[serde(default)]
    pub restart: Restart,
    /// Payload count the sink must see before its inputs close; the stage fails otherwise,
    /// unless the run was stopped early.
    #[serde(default)]
    pub expect: Option<u64>,
}

/// `Exec`: an external program that links `ccssl-pipe` and speaks the slot layouts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// Program to run: an absolute path, a path relative to the graph file, or a bare name
    /// searched beside the running `ccssl-run` and then in `PATH`.
    pub program: String,
    /// Arguments passed to the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// Processes running this stage, 1 to 64.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Restart policy for a failed replica.
    #[serde(default)]
    pub restart: Restart,
    /// Whether the program keeps state across items (then no replicas and no restart).
    #[serde(default)]
    pub stateful: bool,
    /// Bytes per output slot, for edges that do not set `slot_bytes`.
    #[serde(default)]
    pub slot_bytes: Option<u64>,
}

/// The stage kinds of this crate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum PipeStage {
    /// See [`SourceConfig`].
    Source(SourceConfig),
    /// See [`RelayConfig`].
    Relay(RelayConfig),
    /// See [`SinkConfig`].
    Sink(SinkConfig),
    /// See [`ExecConfig`].
    Exec(ExecConfig),
}

const ANY: usize = usize::MAX;

impl StageSpec for PipeStage {
    fn kind(&self) -> &'static str {
        match self {
            PipeStage::Source(_) => "Source",
            PipeStage::Relay(_) => "Relay",
            PipeStage::Sink(_) => "Sink",
            PipeStage::Exec(_) => "Exec",
        }
    }

    fn replicas(&self) -> u32 {
        match self {
            PipeStage::Source(c) => c.replicas,
            PipeStage::Relay(c) => c.replicas,
            PipeStage::Sink(c) => c.replicas,
            PipeStage::Exec(c) => c.replicas,
        }
    }

    fn restart(&self) -> Restart {
        match self {
            PipeStage::Source(c) => c.restart,
            PipeStage::Relay(c) => c.restart,
            PipeStage::Sink(c) => c.restart,
            PipeStage::Exec(c) => c.restart,
        }
    }

    fn stateful(&self) -> bool {
        match self {
            PipeStage::Source(_) | PipeStage::Sink(_) => true,
            PipeStage::Relay(_) => false,
            PipeStage::Exec(c) => c.stateful,
        }
    }

    fn ports(&self) -> Ports {
        match self {
            PipeStage::Source(_) => Ports {
                inputs: (0, 0),
                outputs: (1, ANY),
            },
            PipeStage::Relay(_) => Ports {
                inputs: (1, 1),
                outputs: (1, ANY),
            },
            PipeStage::Sink(_) => Ports {
                inputs: (1, ANY),
                outputs: (0, 0),
            },
            PipeStage::Exec(_) => Ports {
                inputs: (0, ANY),
                outputs: (0, ANY),
            },
        }
    }

    fn output_slot_bytes(&self) -> Option<u64> {
        match self {
            PipeStage::Source(c) => {
                Some(crate::slot::test_slot_size(c.payload_bytes as usize) as u64)
            }
            // A relay forwards what it receives, so its input edge decides; validation copies
            // the size of the edge into the relay.
            PipeStage::Relay(_) | PipeStage::Sink(_) => None,
            PipeStage::Exec(c) => c.slot_bytes,
        }
    }

    fn check(&self) -> Result<(), SpecProblem> {
        let problem = |field: &str, message: String| {
            Err(SpecProblem {
                field: field.to_string(),
                message,
            })
        };
        match self {
            PipeStage::Source(c) if c.count == 0 => {
                problem("count", "invalid count 0; expected at least 1".to_string())
            }
            PipeStage::Source(c) if c.payload_bytes == 0 || c.payload_bytes > MAX_TEST_PAYLOAD => {
                problem(
                    "payload_bytes",
                    format!(
                        "invalid payload_bytes {}; expected 1 to {MAX_TEST_PAYLOAD}",
                        c.payload_bytes
                    ),
                )
            }
            PipeStage::Sink(SinkConfig {
                expect: Some(0), ..
            }) => problem(
                "expect",
                "invalid expect Some(0); expected None or at least Some(1)".to_string(),
            ),
            PipeStage::Exec(c) if c.program.trim().is_empty() => problem(
                "program",
                "empty program; expected a program name or path".to_string(),
            ),
            PipeStage::Exec(c)
                if c.slot_bytes
                    .is_some_and(|b| b == 0 || b > super::MAX_SLOT_BYTES) =>
            {
                problem(
                    "slot_bytes",
                    format!(
                        "invalid slot_bytes {}; expected 1 to {}",
                        c.slot_bytes.unwrap_or(0),
                        super::MAX_SLOT_BYTES
                    ),
                )
            }
            _ => Ok(()),
        }
    }

    fn exec(&self) -> Option<&ExecConfig> {
        match self {
            PipeStage::Exec(c) => Some(c),
            _ => None,
        }
    }
}
