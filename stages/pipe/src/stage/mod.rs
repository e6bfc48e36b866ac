//! The stage runtime: what a stage process gets from the supervisor and how it runs.
//!
//! The supervisor starts each replica of each stage as a process (its own binary with a hidden
//! `stage` subcommand, or an `Exec` program) and passes a [`Launch`] as RON in the
//! [`LAUNCH_ENV`] environment variable. The process calls [`main`] with its body:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use ccssl_pipe::stage::{self, StageContext};
//!
//! fn main() -> ExitCode {
//!     stage::main(|ctx: &mut StageContext| {
//!         let (inputs, outputs, metrics) = ctx.ports();
//!         while let Some(item) = inputs[0].next(metrics)? {
//!             let seq = item.seq();
//!             let mut slot = outputs[0].reserve(seq, metrics)?;
//!             slot[..item.len()].copy_from_slice(&item);
//!             slot.commit(item.len());
//!             item.release(); // only after the output made from it is committed
//!             if let Some(m) = metrics { m.add_items_out(1); }
//!         }
//!         Ok(())
//!     })
//! }
//! ```
//!
//! [`main`] sets up logging to stderr, which the supervisor points at the run's `train.log`.
//! It turns SIGINT and SIGTERM into [`StageContext::stop_requested`], opens the rings, the
//! metrics record and the control block, and runs the body. On success it closes the outputs
//! and exits with 0. On error it logs the error with the stage and edge names and exits with 1.

mod control;
mod ports;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::metrics::{MetricsBlock, MetricsError, StageMetrics, StageState};
use crate::ring::{Consumer, Producer, RingError};
use crate::slot::SlotError;

pub use control::{ControlBlock, ControlError, create as create_control, first_seq_of};
pub use ports::{Input, Item, Output};

/// Environment variable that carries a stage's [`Launch`] as RON.
pub const LAUNCH_ENV: &str = "CCSSL_STAGE";

/// Launch description of one stage replica, written by the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Run id that names the run's shared-memory segments.
    pub run_id: String,
    /// Run directory: logs, the resolved graph, stage outputs.
    pub run_dir: PathBuf,
    /// Seed of the run.
    pub seed: u64,
    /// Sequence number of the run's first item: 0 for a new run, the step of the checkpoint a
    /// resumed run continues from. Sources emit from here and input cursors start here.
    #[serde(default)]
    pub first_seq: u64,
    /// Stage name.
    pub stage: String,
    /// Replica index, `0 .. replicas`.
    pub replica: u32,
    /// Replica count of the stage.
    pub replicas: u32,
    /// The stage's entry in the graph, as RON (`Relay(replicas: 2)`).
    pub spec: String,
    /// Input edges in graph order.
    pub inputs: Vec<Port>,
    /// Output edges in graph order.
    pub outputs: Vec<Port>,
    /// Metrics segment of the stage (one record per replica).
    pub metrics: PathBuf,
    /// Control segment of the stage (input cursors, see [`ControlBlock`]).
    pub control: PathBuf,
}

/// One edge as seen from one replica: its rings, indexed by the peer's replica.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Edge name, `from-to`.
    pub edge: String,
    /// Segment path of the ring to or from each replica of the peer stage.
    pub rings: Vec<PathBuf>,
}

/// Errors of the stage runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// No launch description: the program was not started by `ccssl-run`.
    #[error(
        "environment variable {LAUNCH_ENV} is not set; stage processes are started by ccssl-run"
    )]
    NotLaunched,
    /// The launch description does not parse.
    #[error("invalid {LAUNCH_ENV}: {0}")]
    InvalidLaunch(String),
    /// The stage's config does not parse into the expected type.
    #[error("stage {stage:?}: invalid config: {message}")]
    InvalidConfig {
        /// Stage name.
        stage: String,
        /// Parser message.
        message: String,
    },
    /// A ring of an edge failed (abandoned after another stage failed, closed, corrupt).
    #[error("edge {edge}: {source}")]
    Ring {
        /// Edge name.
        edge: String,
        /// Ring error.
        source: RingError,
    },
    /// A slot of an edge does not decode.
    #[error("edge {edge}: {source}")]
    Slot {
        /// Edge name.
        edge: String,
        /// Slot error.
        source: SlotError,
    },
    /// An item arrived before the expected one, so the expected item was lost upstream.
    #[error("edge {edge}: expected item {expected}, found item {found}; an item was lost upstream")]
    Sequence {
        /// Edge name.
        edge: String,
        /// Sequence number expected.
        expected: u64,
        /// Sequence number found.
        found: u64,
    },
    /// The metrics segment cannot be opened.
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
    /// The control segment cannot be opened.
    #[error("control block: {0}")]
    Control(#[from] ControlError),
    /// The stage's own work failed.
    #[error("{0}")]
    Failed(String),
}

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Returns whether SIGINT or SIGTERM asked this process for a graceful stop; the same as
/// [`StageContext::stop_requested`], callable while the context's ports are borrowed.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Makes SIGINT and SIGTERM set [`STOP`] instead of ending the process.
fn install_stop_handler() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is plain old data; all-zero is a valid empty value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_stop_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; `action`
        // is fully initialised and the old action is not requested.
        unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Everything a running stage replica uses.
pub struct StageContext {
    launch: Launch,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    metrics: Option<MetricsBlock>,
}

impl StageContext {
    /// Reads [`LAUNCH_ENV`] and opens the rings and the metrics record it names.
    pub fn from_env() -> Result<StageContext, StageError> {
        let text = std::env::var(LAUNCH_ENV).map_err(|_| StageError::NotLaunched)?;
        let launch: Launch =
            ron::from_str(&text).map_err(|e| StageError::InvalidLaunch(e.to_string()))?;
        StageContext::open(launch)
    }

    /// Opens the rings and the metrics record of `launch`.
    pub fn open(launch: Launch) -> Result<StageContext, StageError> {
        let metrics = MetricsBlock::open(&launch.metrics)?;
        let control = std::sync::Arc::new(ControlBlock::open(&launch.control)?);
        let mut inputs = Vec::new();
        for (index, port) in launch.inputs.iter().enumerate() {
            let rings = port
                .rings
                .iter()
                .map(Consumer::open)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| StageError::Ring {
                    edge: port.edge.clone(),
                    source,
                })?;
            inputs.push(Input::new(
                port.edge.clone(),
                rings,
                launch.replicas,
                control.clone(),
                launch.replica,
                index as u32,
            ));
        }
        let mut outputs = Vec::new();
        for port in &launch.outputs {
            let rings = port
                .rings
                .iter()
                .map(Producer::open)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| StageError::Ring {
                    edge: port.edge.clone(),
                    source,
                })?;
            outputs.push(Output::new(port.edge.clone(), rings));
        }
        Ok(StageContext {
            launch,
            inputs,
            outputs,
            metrics: Some(metrics),
        })
    }

    /// Stage name.
    pub fn name(&self) -> &str {
        &self.launch.stage
    }

    /// Replica index, `0 .. replicas()`.
    pub fn replica(&self) -> u32 {
        self.launch.replica
    }

    /// Replica count of the stage.
    pub fn replicas(&self) -> u32 {
        self.launch.replicas
    }

    /// Seed of the run.
    pub fn seed(&self) -> u64 {
        self.launch.seed
    }

    /// Run directory.
    pub fn run_dir(&self) -> &std::path::Path {
        &self.launch.run_dir
    }

    /// Returns the launch description.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Parses the stage's graph entry into the graph's stage-spec type (an enum such as
    /// `PipeStage`).
    pub fn spec<S: DeserializeOwned>(&self) -> Result<S, StageError> {
        crate::graph::ron_options()
            .from_str(&self.launch.spec)
            .map_err(|e| StageError::InvalidConfig {
                stage: self.launch.stage.clone(),
                message: e.to_string(),
            })
    }

    /// Returns whether the supervisor requested a graceful stop (SIGINT or SIGTERM). A stage that
    /// creates items stops creating them; others keep draining their inputs.
    pub fn stop_requested(&self) -> bool {
        STOP.load(Ordering::Relaxed)
    }

    /// This replica's metrics record.
    pub fn metrics(&self) -> Option<&StageMetrics> {
        self.metrics
            .as_ref()
            .and_then(|m| m.replica(self.launch.replica))
    }

    /// Inputs, outputs and the metrics record at once, so a body can read one edge while
    /// writing another.
    pub fn ports(&mut self) -> (&mut [Input], &mut [Output], Option<&StageMetrics>) {
        let metrics = self
            .metrics
            .as_ref()
            .and_then(|m| m.replica(self.launch.replica));
        (&mut self.inputs, &mut self.outputs, metrics)
    }

    fn set_state(&self, state: StageState) {
        if let Some(metrics) = self.metrics() {
            metrics.set_state(state);
            metrics.heartbeat();
        }
    }
}

/// Runs a stage process: logging, stop signals, context, body, exit status. See the module
/// documentation for an example.
pub fn main<F>(body: F) -> ExitCode
where
    F: FnOnce(&mut StageContext) -> Result<(), StageError>,
{
    install_stop_handler();
    init_logging();
    let mut ctx = match StageContext::from_env() {
        Ok(ctx) => ctx,
        Err(err) => {
            tracing::error!("stage failed to start: {err}");
            return ExitCode::from(1);
        }
    };
    let span = tracing::info_span!("stage", name = %ctx.launch.stage, replica = ctx.launch.replica);
    let _entered = span.enter();
    if let Some(metrics) = ctx.metrics() {
        metrics.set_pid(std::process::id());
    }
    ctx.set_state(StageState::Running);
    tracing::info!(pid = std::process::id(), "started");
    match body(&mut ctx) {
        Ok(()) => {
            ctx.set_state(StageState::Stopping);
            for output in &mut ctx.outputs {
                output.close();
            }
            let duplicates: u64 = ctx.inputs.iter().map(Input::duplicates).sum();
            ctx.set_state(StageState::Stopped);
            tracing::info!(
                duplicates_dropped = duplicates,
                stop_requested = ctx.stop_requested(),
                "stopped"
            );
            ExitCode::SUCCESS
        }
        // During a graceful stop the supervisor abandons the input rings of each stage that
        // has exited, so a producer blocked on a full ring towards it ends here, not in a kill.
        Err(StageError::Ring {
            edge,
            source: RingError::Abandoned { .. },
        }) if ctx.stop_requested() => {
            ctx.set_state(StageState::Stopped);
            tracing::info!(edge = %edge, "stopped: the consumer on this edge has exited");
            ExitCode::SUCCESS
        }
        Err(err) => {
            ctx.set_state(StageState::Failed);
            tracing::error!("failed: {err}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr without colour; the supervisor appends stderr to the run's `train.log`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCSSL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
