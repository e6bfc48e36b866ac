//! The supervisor: launches a validated graph as processes and watches them.
//!
//! [`run`] creates the run directory and the shared-memory segments, starts every replica of
//! every stage, then loops every [`TICK`]: it reaps exited children, handles SIGINT and
//! SIGTERM, and shows a [`RunView`] to an [`Observer`].
//! - A child that fails is restarted if its stage has `restart: OnFailure(max: N)` and
//!   restarts are left. Otherwise every ring is marked abandoned, so the other stages exit,
//!   and whatever still runs after [`RunOptions::fail_timeout`] is killed.
//! - The first SIGINT or SIGTERM (or [`Control::Stop`]) sends SIGTERM to every child: sources
//!   stop creating items and the rest drain. Children still running after
//!   [`RunOptions::stop_timeout`], or after a second signal, are killed.
//! - The segments are removed when the run ends, however it ends. A run that fails before its
//!   processes start also removes its run directory.

mod dashboard;
mod observer;
mod process;
mod setup;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use ccssl_ema::records::{EndRecord, EndStatus, MetricsRecord, RecordWriter, ResumeRecord};
use ccssl_pipe::graph::{Plan, Restart, StageSpec};
use ccssl_pipe::metrics::{MetricsBlock, StageState, gauge};
use ccssl_pipe::ring::Monitor;

pub use dashboard::Dashboard;
pub use observer::{
    Control, Headless, Observer, ReplicaView, RingView, RunEvent, RunView, StageView,
};
use process::Exit;
pub use setup::GRAPH_FILE;

use crate::cli::{EXIT_FAILED, EXIT_INTERRUPTED};
use crate::dash::rundir::{METRICS_FILE, SUPERVISOR_PID_FILE};

/// Period of the supervisor loop: the delay between a child's death and its handling.
pub const TICK: Duration = Duration::from_millis(20);

/// Age of a running stage's heartbeat after which the supervisor logs a warning. The runtime
/// beats at least every 100 ms while it waits on a ring, so only a stage stuck in its own work
/// for this long is reported.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(10);

/// Log lines of the failed stage shown when a run fails.
const FAILURE_LOG_LINES: usize = 5;

/// Settings of a run that do not come from the graph.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Parent of the run directory; the graph's `out` (else `runs`) when `None`.
    pub out: Option<PathBuf>,
    /// How long a graceful stop may take before the remaining children are killed.
    pub stop_timeout: Duration,
    /// How long the other children may take to exit after a stage failed.
    pub fail_timeout: Duration,
    /// The run to continue, when resuming; `out` is then unused.
    pub resume: Option<Resume>,
}

/// A run directory to continue from its last checkpoint. The caller checked that the
/// checkpoint is intact and was written by the plan's graph.
#[derive(Clone, Debug)]
pub struct Resume {
    /// The existing run directory.
    pub run_dir: PathBuf,
    /// Step of its last checkpoint: the first step the resumed run trains.
    pub step: u64,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            out: None,
            stop_timeout: Duration::from_secs(10),
            fail_timeout: Duration::from_secs(1),
            resume: None,
        }
    }
}

/// End state of a run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Run directory.
    pub run_dir: PathBuf,
    /// The first stage failure, as a sentence naming the stage and how it ended.
    pub failure: Option<String>,
    /// Stage name and replica index of the first failure.
    pub failed_replica: Option<(String, u32)>,
    /// The last lines the failed replica wrote to `train.log`.
    pub failure_log: Vec<String>,
    /// Whether SIGINT or SIGTERM (or Ctrl-C in the dashboard) stopped the run.
    pub interrupted: bool,
    /// Whether the observer asked for a graceful stop (`q` in the dashboard). Such a run
    /// exits 0 unless a stage failed or a signal came as well.
    pub stop_requested: bool,
}

impl Outcome {
    /// Exit code: 1 if a stage failed, else 130 if a signal interrupted the run, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.failure.is_some() {
            EXIT_FAILED
        } else if self.interrupted {
            EXIT_INTERRUPTED
        } else {
            0
        }
    }
}

/// One replica process.
struct Child {
    stage: usize,
    replica: u32,
    pid: u32,
    /// `None` while the process runs.
    exit: Option<Exit>,
}

/// Phase of the watch loop: running, or winding down with a deadline for killing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { kill_at: Instant, killed: bool },
}

/// Runs `plan` to the end. Errors are failures to start the run (segments, directory,
/// processes); stage failures are reported in the [`Outcome`].
pub fn run<S: StageSpec>(
    plan: &Plan<S>,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    process::install_signal_handlers();
    let mut resources = setup::create(plan, options.out.as_deref(), options.resume.as_ref())?;
    let log = setup::open_log(&resources.log_path)?;
    init_logging(&log)?;
    tracing::info!(graph = %plan.file.display(), run_id = %resources.run_id, run_dir = %resources.run_dir.display(), first_step = resources.first_seq, "run starting");
    if let Some(resume) = &options.resume {
        // Written before any stage starts, so every record of the resumed attempt follows it.
        let record = MetricsRecord::Resume(ResumeRecord {
            step: resume.step,
            time_ns: ccssl_pipe::metrics::now_ns(),
        });
        RecordWriter::append(&resources.run_dir.join(METRICS_FILE))
            .and_then(|mut writer| writer.write(&record))
            .context("cannot record the resume")?;
        tracing::info!(step = resume.step, "resuming from the last checkpoint");
    }
    match &resources.stale {
        Ok(removed) => {
            for path in removed {
                tracing::info!(segment = %path.display(), "removed stale segment of a dead run");
            }
        }
        Err(err) => tracing::warn!("cannot scan /dev/shm for stale segments: {err}"),
    }

    let pid_path = resources.run_dir.join(SUPERVISOR_PID_FILE);
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", pid_path.display()))?;

    let blocks = resources
        .metrics
        .iter()
        .map(MetricsBlock::open)
        .collect::<Result<Vec<_>, _>>()?;
    let mut monitors = Vec::new();
    for edge in &plan.edges {
        for p in 0..edge.from_replicas {
            for c in 0..edge.to_replicas {
                let path = ccssl_pipe::shm::segment_path(&resources.run_id, &edge.ring_name(p, c));
                monitors.push((edge.name(), Monitor::open(&path)?));
            }
        }
    }

    let processes = plan.stages.iter().map(|s| s.replicas as usize).sum();
    observer.event(&RunEvent::Starting {
        run_dir: resources.run_dir.clone(),
        processes,
    });
    let mut children = Vec::with_capacity(processes);
    for &index in &plan.order {
        for replica in 0..plan.stages[index].replicas {
            match start(plan, &resources, &log, index, replica, &blocks) {
                Ok(pid) => {
                    children.push(Child {
                        stage: index,
                        replica,
                        pid,
                        exit: None,
                    });
                    observer.event(&RunEvent::Started {
                        stage: plan.stages[index].name.clone(),
                        replica,
                        pid,
                    });
                }
                Err(err) => {
                    tracing::error!(stage = %plan.stages[index].name, replica, "cannot start: {err:#}");
                    kill_all(&mut children);
                    return Err(err.context(format!(
                        "stage \"{}\" replica {replica}",
                        plan.stages[index].name
                    )));
                }
            }
        }
    }
    resources.started = true;
    write_pids(plan, &resources, &children);

    let mut outcome = supervise(
        plan, options, observer, &resources, &log, &blocks, &monitors, children,
    );
    if let Some((stage, replica)) = &outcome.failed_replica {
        outcome.failure_log = last_log_lines(&resources.log_path, stage, *replica);
    }
    write_end_record(&resources.run_dir, &blocks, &outcome);
    tracing::info!(exit_code = outcome.exit_code(), "run finished");
    Ok(outcome)
}

/// The watch loop; returns once every child has exited.
#[allow(clippy::too_many_arguments)]
fn supervise<S: StageSpec>(
    plan: &Plan<S>,
    options: &RunOptions,
    observer: &mut dyn Observer,
    resources: &setup::Resources,
    log: &std::fs::File,
    blocks: &[MetricsBlock],
    monitors: &[(String, Monitor)],
    mut children: Vec<Child>,
) -> Outcome {
    let started = Instant::now();
    let mut phase = Phase::Running;
    let mut signals_seen = 0;
    let mut failure: Option<String> = None;
    let mut failed_replica = None;
    let mut stale_warned = vec![false; children.len()];
    let mut stop_begun = false;
    let mut interrupted = false;
    let mut stop_requested = false;
    let mut restarts = vec![0u32; plan.stages.len()];
    let mut wait_logged = false;
    loop {
        let signals = process::stop_signals();
        let control = observer.tick(&view(plan, started, blocks, monitors, &children));
        let new_signals = signals > signals_seen;
        if control == Control::Kill {
            interrupted = true;
            kill_phase(
                &mut phase,
                observer,
                &children,
                "the dashboard was interrupted",
            );
        } else if (new_signals || control == Control::Stop) && !stop_begun {
            stop_begun = true;
            if new_signals {
                interrupted = true;
            } else {
                stop_requested = true;
            }
            tracing::info!("stop requested; asking every stage to stop");
            observer.event(&RunEvent::Stopping);
            signal_live(&children, libc::SIGTERM);
            if phase == Phase::Running {
                phase = Phase::Stopping {
                    kill_at: Instant::now() + options.stop_timeout,
                    killed: false,
                };
            }
            if signals > signals_seen + 1 {
                kill_phase(&mut phase, observer, &children, "a second stop signal");
            }
        } else if new_signals {
            interrupted = true;
            kill_phase(&mut phase, observer, &children, "a second stop signal");
        }
        signals_seen = signals;

        while let Some((pid, exit)) = process::reap() {
            let Some(slot) = children
                .iter()
                .position(|c| c.pid == pid && c.exit.is_none())
            else {
                continue;
            };
            children[slot].exit = Some(exit);
            let stage = &plan.stages[children[slot].stage];
            let replica = children[slot].replica;
            if exit.success() {
                tracing::info!(stage = %stage.name, replica, pid, "stage exited");
                if stop_begun {
                    abandon_inputs(plan, monitors, &stage.name, replica);
                }
                continue;
            }
            let status = exit.describe();
            let restart_left = match stage.restart {
                Restart::OnFailure { max } if restarts[children[slot].stage] < max => Some(max),
                _ => None,
            };
            if let (Phase::Running, Some(max), None) = (phase, restart_left, &failure) {
                restarts[children[slot].stage] += 1;
                let count = restarts[children[slot].stage];
                if let Some(record) = blocks[children[slot].stage].replica(replica) {
                    record.add_restart();
                }
                match start(plan, resources, log, children[slot].stage, replica, blocks) {
                    Ok(new_pid) => {
                        tracing::warn!(stage = %stage.name, replica, pid, new_pid, "stage {status}; restarted ({count} of {max})");
                        observer.event(&RunEvent::Restarted {
                            stage: stage.name.clone(),
                            replica,
                            pid: new_pid,
                            status,
                            count,
                            max,
                        });
                        let child = Child {
                            stage: children[slot].stage,
                            replica,
                            pid: new_pid,
                            exit: None,
                        };
                        children.push(child);
                        write_pids(plan, resources, &children);
                        continue;
                    }
                    Err(err) => {
                        tracing::error!(stage = %stage.name, replica, "cannot restart: {err:#}")
                    }
                }
            }
            tracing::error!(stage = %stage.name, replica, pid, "stage {status}");
            if failure.is_none() && !matches!(phase, Phase::Stopping { killed: true, .. }) {
                failure = Some(format!(
                    "stage \"{}\" replica {replica} (pid {pid}) {status}",
                    stage.name
                ));
                failed_replica = Some((stage.name.clone(), replica));
                observer.event(&RunEvent::Failed {
                    stage: stage.name.clone(),
                    replica,
                    pid,
                    status,
                });
                abandon_all(monitors);
                phase = Phase::Stopping {
                    kill_at: Instant::now() + options.fail_timeout,
                    killed: false,
                };
            }
        }

        stale_warned.resize(children.len(), false);
        warn_stale_heartbeats(plan, blocks, &children, &mut stale_warned);

        if children.iter().all(|c| c.exit.is_some()) {
            return Outcome {
                run_dir: resources.run_dir.clone(),
                failure,
                failed_replica,
                failure_log: Vec::new(),
                interrupted,
                stop_requested,
            };
        }
        if let Phase::Stopping {
            kill_at,
            killed: false,
        } = phase
            && Instant::now() >= kill_at
        {
            // A graceful stop waits for a stage that is inside a step, an evaluation or a
            // checkpoint write and still beating. Each wait grants a fresh grace period, so the
            // work that follows (the final snapshot, the checkpoint) is not cut off either.
            // A second signal still kills at once.
            let working = (failure.is_none())
                .then(|| working_stage(plan, blocks, &children))
                .flatten();
            match working {
                Some(name) => {
                    if !wait_logged {
                        wait_logged = true;
                        tracing::info!(stage = %name, "stop grace period over; waiting for the stage to finish its work");
                    }
                    phase = Phase::Stopping {
                        kill_at: Instant::now() + options.stop_timeout,
                        killed: false,
                    };
                }
                None => kill_phase(&mut phase, observer, &children, "they did not exit in time"),
            }
        }
        std::thread::sleep(TICK);
    }
}

/// Returns the name of a live stage that is inside long work (see
/// [`ccssl_pipe::metrics::beat_while`]) with a heartbeat younger than [`HEARTBEAT_STALE`].
fn working_stage<'a, S: StageSpec>(
    plan: &'a Plan<S>,
    blocks: &[MetricsBlock],
    children: &[Child],
) -> Option<&'a str> {
    let now = ccssl_pipe::metrics::now_ns();
    children
        .iter()
        .filter(|child| child.exit.is_none())
        .find(|child| {
            blocks[child.stage]
                .replica(child.replica)
                .map(|record| record.snapshot())
                .is_some_and(|m| {
                    m.working
                        && m.pid == child.pid
                        && Duration::from_nanos(now.saturating_sub(m.heartbeat_ns))
                            < HEARTBEAT_STALE
                })
        })
        .map(|child| plan.stages[child.stage].name.as_str())
}

/// Logs, once per process, a running stage whose heartbeat is older than [`HEARTBEAT_STALE`].
fn warn_stale_heartbeats<S: StageSpec>(
    plan: &Plan<S>,
    blocks: &[MetricsBlock],
    children: &[Child],
    warned: &mut [bool],
) {
    let now = ccssl_pipe::metrics::now_ns();
    for (child, warned) in children.iter().zip(warned.iter_mut()) {
        if *warned || child.exit.is_some() {
            continue;
        }
        let Some(record) = blocks[child.stage].replica(child.replica) else {
            continue;
        };
        let snapshot = record.snapshot();
        let age = Duration::from_nanos(now.saturating_sub(snapshot.heartbeat_ns));
        if snapshot.state == Some(StageState::Running)
            && snapshot.pid == child.pid
            && age > HEARTBEAT_STALE
        {
            *warned = true;
            tracing::warn!(stage = %plan.stages[child.stage].name, replica = child.replica, pid = child.pid, "no heartbeat for {:.0} s; the stage may be stuck", age.as_secs_f64());
        }
    }
}

/// Returns the last [`FAILURE_LOG_LINES`] lines that replica `replica` of `stage` wrote to the
/// log, recognised by the span its runtime opens (`stage{name=.. replica=..}`).
fn last_log_lines(log: &std::path::Path, stage: &str, replica: u32) -> Vec<String> {
    let marker = format!("stage{{name={stage} replica={replica}}}");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&marker))
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(FAILURE_LOG_LINES)..].to_vec()
}

/// Starts replica `replica` of stage `index` and records its pid in the metrics block.
fn start<S: StageSpec>(
    plan: &Plan<S>,
    resources: &setup::Resources,
    log: &std::fs::File,
    index: usize,
    replica: u32,
    blocks: &[MetricsBlock],
) -> Result<u32> {
    let launch = setup::launch(plan, resources, index, replica)?;
    let pid = process::spawn(&plan.stages[index].program, &launch, log)?;
    if let Some(record) = blocks[index].replica(replica) {
        record.set_pid(pid);
    }
    tracing::info!(stage = %plan.stages[index].name, replica, pid, "stage started");
    Ok(pid)
}

fn kill_phase(phase: &mut Phase, observer: &mut dyn Observer, children: &[Child], reason: &str) {
    if matches!(phase, Phase::Stopping { killed: true, .. }) {
        return;
    }
    tracing::warn!("killing the remaining stages: {reason}");
    observer.event(&RunEvent::Killing {
        reason: reason.to_string(),
    });
    signal_live(children, libc::SIGKILL);
    *phase = Phase::Stopping {
        kill_at: Instant::now(),
        killed: true,
    };
}

fn signal_live(children: &[Child], signal: libc::c_int) {
    for child in children.iter().filter(|c| c.exit.is_none()) {
        process::send(child.pid, signal);
    }
}

/// Kills every started child and waits for it, after a failed start.
fn kill_all(children: &mut [Child]) {
    signal_live(children, libc::SIGKILL);
    for child in children.iter_mut() {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        unsafe {
            libc::waitpid(child.pid as libc::pid_t, &mut status, 0);
        }
        child.exit = Some(Exit::Signal(libc::SIGKILL));
    }
}

/// Marks abandoned the rings that replica `replica` of `stage` consumed, so producers blocked
/// on them during a graceful stop wake up and exit instead of waiting for the kill.
fn abandon_inputs<S: StageSpec>(
    plan: &Plan<S>,
    monitors: &[(String, Monitor)],
    stage: &str,
    replica: u32,
) {
    // `monitors` lists the rings edge by edge, producer replica by consumer replica.
    let mut index = 0;
    for edge in &plan.edges {
        for _ in 0..edge.from_replicas {
            for consumer in 0..edge.to_replicas {
                if edge.to == stage && consumer == replica {
                    let (name, monitor) = &monitors[index];
                    monitor.mark_abandoned();
                    tracing::info!(edge = %name, ring = %monitor.path().display(), "ring of an exited consumer marked abandoned");
                }
                index += 1;
            }
        }
    }
}

fn abandon_all(monitors: &[(String, Monitor)]) {
    for (edge, monitor) in monitors {
        monitor.mark_abandoned();
        tracing::info!(edge = %edge, ring = %monitor.path().display(), "ring marked abandoned");
    }
}

fn write_pids<S: StageSpec>(plan: &Plan<S>, resources: &setup::Resources, children: &[Child]) {
    let lines: String = children
        .iter()
        .filter(|c| c.exit.is_none())
        .map(|c| format!("{} {} {}\n", plan.stages[c.stage].name, c.replica, c.pid))
        .collect();
    if let Err(err) = process::write_pids(&resources.run_dir, &lines) {
        tracing::warn!("{err:#}");
    }
}

fn view<S: StageSpec>(
    plan: &Plan<S>,
    started: Instant,
    blocks: &[MetricsBlock],
    monitors: &[(String, Monitor)],
    children: &[Child],
) -> RunView {
    let stages = plan
        .stages
        .iter()
        .enumerate()
        .map(|(index, stage)| StageView {
            name: stage.name.clone(),
            kind: stage.spec.kind().to_string(),
            replicas: (0..stage.replicas)
                .filter_map(|r| blocks[index].replica(r))
                .enumerate()
                .map(|(r, record)| ReplicaView {
                    metrics: record.snapshot(),
                    alive: children
                        .iter()
                        .any(|c| c.stage == index && c.replica == r as u32 && c.exit.is_none()),
                })
                .collect(),
        })
        .collect();
    let rings = monitors
        .iter()
        .map(|(edge, monitor)| RingView {
            edge: edge.clone(),
            stats: monitor.stats(),
        })
        .collect();
    RunView {
        name: plan.name().to_string(),
        elapsed: started.elapsed(),
        stages,
        rings,
    }
}

/// Appends the run's `end` record to `metrics.jsonl`, with the training progress of the stage
/// that reports it (see [`gauge`]); both are 0 in a graph without a training stage.
fn write_end_record(run_dir: &std::path::Path, blocks: &[MetricsBlock], outcome: &Outcome) {
    let progress = blocks
        .iter()
        .filter_map(|block| block.replica(0))
        .map(|record| record.snapshot().gauges)
        .find(|gauges| gauges[gauge::TOTAL_STEPS] > 0.0);
    let status = if outcome.failure.is_some() {
        EndStatus::Failed
    } else if outcome.interrupted || outcome.stop_requested {
        EndStatus::Stopped
    } else {
        EndStatus::Completed
    };
    let record = MetricsRecord::End(EndRecord {
        step: progress.map_or(0, |g| g[gauge::STEP] as u64),
        total_steps: progress.map_or(0, |g| g[gauge::TOTAL_STEPS] as u64),
        status,
        time_ns: ccssl_pipe::metrics::now_ns(),
    });
    let written =
        RecordWriter::append(&run_dir.join(METRICS_FILE)).and_then(|mut w| w.write(&record));
    if let Err(err) = written {
        tracing::error!("cannot write the end record: {err}");
    }
}

/// Sends the supervisor's tracing output to the run's `train.log`.
fn init_logging(log: &std::fs::File) -> Result<()> {
    let writer = Mutex::new(log.try_clone()?);
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCSSL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    Ok(())
}
