//! Terminal dashboard of a ccssl run: where the pipeline spends its time, stage by stage and
//! ring by ring, plus the training curves.
//!
//! - [`model`]: what one reading of a run contains ([`Sample`]) and where readings come from
//!   ([`MetricsSource`]; [`RecordedSource`] replays a JSON lines file).
//! - [`view`]: rates over a sliding window, stalled stages, ring backpressure, the bottleneck.
//! - [`app`] and [`render`]: the ratatui application state and its drawing.
//! - [`terminal`]: the interactive loop that owns the terminal.
//! - [`live`]: the [`MetricsSource`] of a running run, read from shared memory.
//! - [`headless`]: the one-line progress report used when stdout is not a terminal.
//! - [`records`]: the `metrics.jsonl` record format shared with the EMA stage.
//! - [`rundir`]: whether a run directory belongs to a running or finished run, and its summary.

pub mod app;
mod format;
pub mod headless;
pub mod live;
pub mod logtail;
pub mod model;
pub use ccssl_ema::records;
pub mod render;
pub mod rundir;
pub mod terminal;
pub mod view;

pub use app::{Action, App, ChartKind, Mode, QuitBehavior};
pub use headless::format_progress_line;
pub use live::{LiveSource, RunEnd, RunLayout};
pub use model::{
    EdgeReading, EvalPoint, MetricsSource, RecordedSource, RunHeader, Sample, SampleRecorder,
    SourceError, StageReading, StageState, TrainGauges,
};
pub use records::{EndRecord, EndStatus, EvalRecord, MetricsRecord, TrainRecord};
pub use rundir::{RunDir, RunDirError, RunStatus, RunSummary, run_status};
pub use terminal::{DashExit, attach_dashboard, run_dashboard, run_headless};
pub use view::{DerivedView, ViewConfig, Window};

#[cfg(test)]
pub(crate) mod testdata {
    use std::path::Path;

    use super::model::{Sample, parse_samples};

    /// Loader, two augment replicas, step and EMA stages, three samples one second apart; the
    /// step stage is the bottleneck.
    pub(crate) fn four_stages() -> Vec<Sample> {
        let text = include_str!("testdata/four-stages.jsonl");
        parse_samples(text, Path::new("testdata/four-stages.jsonl")).unwrap()
    }
}
