//! Derived view: rates and shares over a sliding window of samples, stalled stages, ring
//! occupancy and backpressure, and the bottleneck stage.
//!
//! Every rate is a counter difference divided by the difference of the samples' own
//! timestamps, so a slow or paused dashboard does not distort it.

use std::collections::VecDeque;

use super::model::{EdgeReading, EvalPoint, Sample, StageReading, StageState, TrainGauges};

/// Default span of the sliding window: long enough to smooth over a few training steps of a
/// small CPU graph, short enough that a change in throughput shows within seconds.
pub const DEFAULT_WINDOW_NS: u64 = 5_000_000_000;

/// Default age after which a heartbeat that has not advanced marks its replica `stalled`.
/// The runtime beats while a replica works and while it waits on a ring, so ten seconds
/// without a beat is far beyond normal jitter.
pub const DEFAULT_STALL_AFTER_NS: u64 = 10_000_000_000;

/// A stage must be busy at least this share of the window to be named the bottleneck.
pub const BOTTLENECK_MIN_BUSY: f64 = 0.5;
/// Its input rings must be at least this full on average over the window.
pub const BOTTLENECK_MIN_INPUT_FULL: f64 = 0.5;
/// Its output rings must be at most this full on average over the window.
pub const BOTTLENECK_MAX_OUTPUT_FULL: f64 = 0.5;

/// Tunables of the derived view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewConfig {
    pub window_ns: u64,
    pub stall_after_ns: u64,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self {
            window_ns: DEFAULT_WINDOW_NS,
            stall_after_ns: DEFAULT_STALL_AFTER_NS,
        }
    }
}

/// State shown for a stage: the reported state, or `Stalled` when its heartbeat stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayState {
    Starting,
    Running,
    Stalled,
    Stopping,
    Stopped,
    Failed,
}

impl DisplayState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stalled => "stalled",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// Rank used to summarise replicas: the state most worth a look wins.
    fn urgency(self) -> u8 {
        match self {
            Self::Stopped => 0,
            Self::Running => 1,
            Self::Stopping => 2,
            Self::Starting => 3,
            Self::Stalled => 4,
            Self::Failed => 5,
        }
    }
}

/// One stage, its replicas summed (rates) or averaged per replica (shares).
#[derive(Debug, Clone, PartialEq)]
pub struct StageView {
    pub name: String,
    pub kind: String,
    pub state: DisplayState,
    /// Pids of the replicas that have one, in replica order.
    pub pids: Vec<u32>,
    pub replicas: u32,
    /// Replicas whose process is up: starting, running, stalled or stopping.
    pub replicas_alive: u32,
    /// Batches per second: the larger of the input and output rates, so sources (no input)
    /// and sinks (no output) show their throughput too. `None` until two samples exist.
    pub items_per_s: Option<f64>,
    /// Images per second, by the same rule as `items_per_s`.
    pub images_per_s: Option<f64>,
    /// Shares of the window, averaged over replicas, each in `0..=1`.
    pub busy: Option<f64>,
    pub blocked_in: Option<f64>,
    pub blocked_out: Option<f64>,
    pub restarts: u32,
}

/// One ring.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeView {
    pub name: String,
    pub from: String,
    pub to: String,
    pub slot_count: u32,
    /// Full slots in the latest sample.
    pub filled: u64,
    /// `filled / slot_count` in the latest sample, in `0..=1`.
    pub occupancy: f64,
    /// Occupancy averaged over the samples of the window.
    pub mean_occupancy: f64,
    /// Share of the window the producer waited for a free slot.
    pub backpressure: Option<f64>,
    /// Share of the window the consumer waited for a published slot.
    pub starvation: Option<f64>,
    pub pushes_per_s: Option<f64>,
}

/// The stage that limits throughput, with the numbers that chose it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottleneck {
    pub stage: String,
    pub busy: f64,
    /// Mean occupancy of its input rings; `None` for a source stage.
    pub input_full: Option<f64>,
    /// Mean occupancy of its output rings; `None` for a sink stage.
    pub output_full: Option<f64>,
}

/// Everything the dashboard and the headless progress line show, derived from a window.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedView {
    pub run_name: String,
    pub graph_file: String,
    pub step: u64,
    pub total_steps: u64,
    pub lr: f64,
    pub elapsed_ns: u64,
    /// Time the window's averaged step rate needs for the remaining steps.
    pub eta_ns: Option<u64>,
    pub steps_per_s: Option<f64>,
    /// Images per second into the `step` stage; the largest stage image rate when the graph
    /// has no `step` stage.
    pub images_per_s: Option<f64>,
    /// Span covered by the rates, zero with a single sample.
    pub window_ns: u64,
    pub stages: Vec<StageView>,
    pub edges: Vec<EdgeView>,
    pub bottleneck: Option<Bottleneck>,
    pub train: Option<TrainGauges>,
    pub last_eval: Option<EvalPoint>,
}

/// The latest samples covering at least the configured span.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<Sample>,
    config: ViewConfig,
}

impl Window {
    pub fn new(config: ViewConfig) -> Self {
        Self {
            samples: VecDeque::new(),
            config,
        }
    }

    /// Adds a sample. One not newer than the latest is ignored, so a source that repeats a
    /// reading cannot produce a zero time difference.
    pub fn push(&mut self, sample: Sample) {
        if let Some(last) = self.samples.back()
            && sample.time_ns <= last.time_ns
        {
            return;
        }
        let start = sample.time_ns.saturating_sub(self.config.window_ns);
        self.samples.push_back(sample);
        // Keep the newest sample at or before the window start as the baseline, so the rates
        // span the whole window once enough history exists.
        while self.samples.len() >= 2 && self.samples[1].time_ns <= start {
            self.samples.pop_front();
        }
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Derives the view; `None` before the first sample.
    pub fn view(&self) -> Option<DerivedView> {
        let latest = self.samples.back()?;
        let base = self.samples.front()?;
        let span_ns = latest.time_ns - base.time_ns;
        let stages = stage_views(base, latest, span_ns, self.config.stall_after_ns);
        let edges: Vec<EdgeView> = latest
            .edges
            .iter()
            .map(|edge| edge_view(edge, &self.samples, span_ns))
            .collect();
        let bottleneck = find_bottleneck(&stages, &edges);
        let steps_per_s = rate(latest.run.step.saturating_sub(base.run.step), span_ns);
        let remaining = latest.run.total_steps.saturating_sub(latest.run.step);
        let eta_ns = steps_per_s
            .filter(|&r| r > 0.0)
            .map(|r| (remaining as f64 / r * 1e9) as u64);
        Some(DerivedView {
            run_name: latest.run.run_name.clone(),
            graph_file: latest.run.graph_file.clone(),
            step: latest.run.step,
            total_steps: latest.run.total_steps,
            lr: latest.run.lr,
            elapsed_ns: latest.time_ns.saturating_sub(latest.run.start_ns),
            eta_ns,
            steps_per_s,
            images_per_s: pipeline_images_per_s(&stages),
            window_ns: span_ns,
            stages,
            edges,
            bottleneck,
            train: latest.train,
            last_eval: latest.evals.iter().max_by_key(|e| e.step).copied(),
        })
    }
}

/// Difference of a counter that resets to zero when its replica restarts.
fn delta(now: u64, before: u64) -> u64 {
    if now >= before { now - before } else { now }
}

fn rate(count: u64, span_ns: u64) -> Option<f64> {
    (span_ns > 0).then(|| count as f64 * 1e9 / span_ns as f64)
}

fn share(ns: u64, span_ns: u64) -> Option<f64> {
    (span_ns > 0).then(|| (ns as f64 / span_ns as f64).clamp(0.0, 1.0))
}

fn replica_state(reading: &StageReading, now_ns: u64, stall_after_ns: u64) -> DisplayState {
    let beating = now_ns.saturating_sub(reading.heartbeat_ns) <= stall_after_ns;
    match reading.state {
        StageState::Stopped => DisplayState::Stopped,
        StageState::Failed => DisplayState::Failed,
        _ if !beating => DisplayState::Stalled,
        StageState::Starting => DisplayState::Starting,
        StageState::Running => DisplayState::Running,
        StageState::Stopping => DisplayState::Stopping,
    }
}

/// Counter differences of one replica over the window, `None` when it is new.
struct ReplicaDelta {
    items: u64,
    images: u64,
    busy_ns: u64,
    blocked_in_ns: u64,
    blocked_out_ns: u64,
}

fn replica_delta(base: &Sample, now: &StageReading) -> Option<ReplicaDelta> {
    let before = base
        .stages
        .iter()
        .find(|r| r.name == now.name && r.replica == now.replica)?;
    let items_in = delta(now.items_in, before.items_in);
    let items_out = delta(now.items_out, before.items_out);
    let images_in = delta(now.images_in, before.images_in);
    let images_out = delta(now.images_out, before.images_out);
    Some(ReplicaDelta {
        items: items_in.max(items_out),
        images: images_in.max(images_out),
        busy_ns: delta(now.busy_ns, before.busy_ns),
        blocked_in_ns: delta(now.blocked_in_ns, before.blocked_in_ns),
        blocked_out_ns: delta(now.blocked_out_ns, before.blocked_out_ns),
    })
}

fn stage_views(base: &Sample, latest: &Sample, span_ns: u64, stall_ns: u64) -> Vec<StageView> {
    let mut names: Vec<&str> = Vec::new();
    for reading in &latest.stages {
        if !names.contains(&reading.name.as_str()) {
            names.push(&reading.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let replicas: Vec<&StageReading> =
                latest.stages.iter().filter(|r| r.name == name).collect();
            stage_view(&replicas, base, latest.time_ns, span_ns, stall_ns)
        })
        .collect()
}

fn stage_view(
    replicas: &[&StageReading],
    base: &Sample,
    now_ns: u64,
    span_ns: u64,
    stall_ns: u64,
) -> StageView {
    let first = replicas[0];
    let states: Vec<DisplayState> = replicas
        .iter()
        .map(|r| replica_state(r, now_ns, stall_ns))
        .collect();
    let state = states
        .iter()
        .copied()
        .max_by_key(|s| s.urgency())
        .unwrap_or(DisplayState::Stopped);
    let alive = states
        .iter()
        .filter(|s| {
            matches!(
                s,
                DisplayState::Starting
                    | DisplayState::Running
                    | DisplayState::Stalled
                    | DisplayState::Stopping
            )
        })
        .count() as u32;
    let deltas: Vec<ReplicaDelta> = replicas
        .iter()
        .filter_map(|r| replica_delta(base, r))
        .collect();
    let measured = !deltas.is_empty() && span_ns > 0;
    // Shares are per replica: the summed time divided by the time all measured replicas had.
    let replica_span = span_ns * deltas.len() as u64;
    let sum = |field: fn(&ReplicaDelta) -> u64| deltas.iter().map(field).sum::<u64>();
    StageView {
        name: first.name.clone(),
        kind: first.kind.clone(),
        state,
        pids: replicas.iter().filter_map(|r| r.pid).collect(),
        replicas: first.replicas.max(replicas.len() as u32),
        replicas_alive: alive,
        items_per_s: rate(sum(|d| d.items), span_ns).filter(|_| measured),
        images_per_s: rate(sum(|d| d.images), span_ns).filter(|_| measured),
        busy: share(sum(|d| d.busy_ns), replica_span),
        blocked_in: share(sum(|d| d.blocked_in_ns), replica_span),
        blocked_out: share(sum(|d| d.blocked_out_ns), replica_span),
        restarts: replicas.iter().map(|r| r.restarts).sum(),
    }
}

fn occupancy(edge: &EdgeReading) -> f64 {
    if edge.slot_count == 0 {
        return 0.0;
    }
    let filled = edge.head.saturating_sub(edge.tail);
    (filled as f64 / f64::from(edge.slot_count)).clamp(0.0, 1.0)
}

fn edge_view(edge: &EdgeReading, samples: &VecDeque<Sample>, span_ns: u64) -> EdgeView {
    let history: Vec<&EdgeReading> = samples
        .iter()
        .filter_map(|s| s.edges.iter().find(|e| e.name == edge.name))
        .collect();
    let mean_occupancy =
        history.iter().map(|e| occupancy(e)).sum::<f64>() / history.len().max(1) as f64;
    // `history` ends with `edge` itself; its first entry is the window baseline when the ring
    // existed then.
    let base = history.first().filter(|_| history.len() >= 2);
    let diff = |field: fn(&EdgeReading) -> u64| base.map(|b| delta(field(edge), field(b)));
    EdgeView {
        name: edge.name.clone(),
        from: edge.from.clone(),
        to: edge.to.clone(),
        slot_count: edge.slot_count,
        filled: edge.head.saturating_sub(edge.tail),
        occupancy: occupancy(edge),
        mean_occupancy,
        backpressure: diff(|e| e.producer_blocked_ns).and_then(|ns| share(ns, span_ns)),
        starvation: diff(|e| e.consumer_blocked_ns).and_then(|ns| share(ns, span_ns)),
        pushes_per_s: diff(|e| e.pushes).and_then(|n| rate(n, span_ns)),
    }
}

fn mean_occupancy_of<'a>(edges: impl Iterator<Item = &'a EdgeView>) -> Option<f64> {
    let values: Vec<f64> = edges.map(|e| e.mean_occupancy).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Picks the bottleneck stage.
///
/// Rule: a candidate is busy at least [`BOTTLENECK_MIN_BUSY`] of the window (averaged over
/// replicas). Its input rings average at least [`BOTTLENECK_MIN_INPUT_FULL`] full, and its
/// output rings at most [`BOTTLENECK_MAX_OUTPUT_FULL`] full; a source or sink skips the missing
/// side. The candidate with the highest busy share wins, the earlier in the graph on ties.
///
/// Why: in a steady pipeline every stage moves the same number of batches, so the limiting one
/// is the one with the least idle time. Busy share alone can mislead, because a stage can be
/// busy and still wait on its neighbours, so the rings must agree: work piles up in front of
/// the bottleneck (producers block on its full input) and its consumers starve (its output
/// stays nearly empty). Averages over the window are used because a single reading of a
/// ring's fill level jumps with every push and pop. When no stage meets all three conditions
/// (start-up, shutdown, a stall) nothing is marked rather than a guess.
pub fn find_bottleneck(stages: &[StageView], edges: &[EdgeView]) -> Option<Bottleneck> {
    let mut best: Option<Bottleneck> = None;
    for stage in stages {
        let Some(busy) = stage.busy else { continue };
        let input_full = mean_occupancy_of(edges.iter().filter(|e| e.to == stage.name));
        let output_full = mean_occupancy_of(edges.iter().filter(|e| e.from == stage.name));
        let qualifies = busy >= BOTTLENECK_MIN_BUSY
            && input_full.is_none_or(|f| f >= BOTTLENECK_MIN_INPUT_FULL)
            && output_full.is_none_or(|f| f <= BOTTLENECK_MAX_OUTPUT_FULL);
        if qualifies && best.as_ref().is_none_or(|b| busy > b.busy) {
            best = Some(Bottleneck {
                stage: stage.name.clone(),
                busy,
                input_full,
                output_full,
            });
        }
    }
    best
}

/// Images per second of the `step` stage, or the largest stage image rate without one.
fn pipeline_images_per_s(stages: &[StageView]) -> Option<f64> {
    if let Some(step) = stages.iter().find(|s| s.kind == "step") {
        return step.images_per_s;
    }
    stages
        .iter()
        .filter_map(|s| s.images_per_s)
        .max_by(f64::total_cmp)
}

#[cfg(test)]
mod tests;
