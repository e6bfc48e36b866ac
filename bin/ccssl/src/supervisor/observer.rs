//! Reports of the supervisor while it runs, and the plain-text observer.
//!
//! The supervisor loop calls [`Observer::event`] for each lifecycle event and
//! [`Observer::tick`] about every [`TICK`](super::TICK) with a [`RunView`] of the metrics
//! blocks and rings. A dashboard implements the same trait and returns [`Control::Stop`] when
//! the user asks for a graceful stop.

use std::time::{Duration, Instant};

use ccssl_pipe::metrics::MetricsSnapshot;
use ccssl_pipe::ring::RingStats;

/// A lifecycle event of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The run directory and segments exist and the processes are starting.
    Starting {
        /// Run directory.
        run_dir: std::path::PathBuf,
        /// Processes to start.
        processes: usize,
    },
    /// A replica process started.
    Started {
        /// Stage name.
        stage: String,
        /// Replica index.
        replica: u32,
        /// Process id.
        pid: u32,
    },
    /// A replica failed and was started again.
    Restarted {
        /// Stage name.
        stage: String,
        /// Replica index.
        replica: u32,
        /// Process id of the new process.
        pid: u32,
        /// End state of the old process, as a phrase.
        status: String,
        /// Restarts of this stage so far, and the most allowed.
        count: u32,
        /// Most restarts allowed.
        max: u32,
    },
    /// A replica failed and the run fails with it.
    Failed {
        /// Stage name.
        stage: String,
        /// Replica index.
        replica: u32,
        /// Process id.
        pid: u32,
        /// End state of the process, as a phrase.
        status: String,
    },
    /// A graceful stop began (first SIGINT or SIGTERM, or the observer asked).
    Stopping,
    /// Processes were killed: a second signal, or they outlived the stop deadline.
    Killing {
        /// Why.
        reason: String,
    },
}

/// One replica in a [`RunView`].
#[derive(Clone, Debug)]
pub struct ReplicaView {
    /// Latest metrics record.
    pub metrics: MetricsSnapshot,
    /// Whether its process is alive.
    pub alive: bool,
}

/// One stage in a [`RunView`].
#[derive(Clone, Debug)]
pub struct StageView {
    /// Stage name.
    pub name: String,
    /// Stage kind.
    pub kind: String,
    /// Each replica.
    pub replicas: Vec<ReplicaView>,
}

/// One ring in a [`RunView`].
#[derive(Clone, Debug)]
pub struct RingView {
    /// Edge name, `from-to`.
    pub edge: String,
    /// Ring counters.
    pub stats: RingStats,
}

/// State of the run at one instant, as read from the metrics blocks and rings.
#[derive(Clone, Debug)]
pub struct RunView {
    /// Graph name.
    pub name: String,
    /// Time since the processes started.
    pub elapsed: Duration,
    /// Stages in graph order.
    pub stages: Vec<StageView>,
    /// Rings in graph order.
    pub rings: Vec<RingView>,
}

/// Request of the observer to the supervisor after a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep running.
    Continue,
    /// Stop gracefully, as on SIGINT.
    Stop,
}

/// Something that shows the run: the plain-text [`Headless`] printer or a dashboard.
pub trait Observer {
    /// Reports a lifecycle event.
    fn event(&mut self, event: &RunEvent);
    /// Shows the current state; called about every tick.
    fn tick(&mut self, view: &RunView) -> Control;
}

/// Prints events and, every [`Headless::INTERVAL`], one progress line to stderr.
pub struct Headless {
    program: String,
    last: Option<Instant>,
}

impl Headless {
    /// Time between progress lines.
    pub const INTERVAL: Duration = Duration::from_secs(1);

    /// Creates a printer whose lines start with `program`.
    pub fn new(program: &str) -> Headless {
        Headless {
            program: program.to_string(),
            last: None,
        }
    }
}

impl Observer for Headless {
    fn event(&mut self, event: &RunEvent) {
        let p = &self.program;
        match event {
            RunEvent::Starting { run_dir, processes } => {
                eprintln!(
                    "{p}: starting {processes} processes; run directory {}",
                    run_dir.display()
                )
            }
            RunEvent::Started { .. } => {}
            RunEvent::Restarted {
                stage,
                replica,
                pid,
                status,
                count,
                max,
            } => eprintln!(
                "{p}: stage \"{stage}\" replica {replica} {status}; restarted as pid {pid} (restart {count} of {max})"
            ),
            RunEvent::Failed {
                stage,
                replica,
                pid,
                status,
            } => {
                eprintln!("{p}: stage \"{stage}\" replica {replica} (pid {pid}) {status}")
            }
            RunEvent::Stopping => {
                eprintln!("{p}: stopping gracefully; send SIGINT again to kill the stages")
            }
            RunEvent::Killing { reason } => eprintln!("{p}: killing the stages: {reason}"),
        }
    }

    fn tick(&mut self, view: &RunView) -> Control {
        if self.last.is_some_and(|t| t.elapsed() < Self::INTERVAL) {
            return Control::Continue;
        }
        self.last = Some(Instant::now());
        let parts: Vec<String> = view
            .stages
            .iter()
            .map(|stage| {
                let items_in: u64 = stage.replicas.iter().map(|r| r.metrics.items_in).sum();
                let items_out: u64 = stage.replicas.iter().map(|r| r.metrics.items_out).sum();
                let alive = stage.replicas.iter().filter(|r| r.alive).count();
                format!(
                    "{} in {items_in} out {items_out} ({alive}/{} up)",
                    stage.name,
                    stage.replicas.len()
                )
            })
            .collect();
        eprintln!(
            "{}: {:.1} s | {}",
            self.program,
            view.elapsed.as_secs_f64(),
            parts.join(" | ")
        );
        Control::Continue
    }
}
