//! The dashboard as an [`Observer`]: the dashboard runs on its own thread and reads the run's
//! shared memory through a [`LiveSource`], while the supervisor loop keeps the main thread.
//! The two threads share three flags: the user's stop request, an interrupt (Ctrl-C during a
//! stop), and the end of the run.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::dash::live::{LiveSource, RunEnd};
use crate::dash::rundir::RunDir;
use crate::dash::terminal::{DashExit, run_dashboard};

use super::observer::{Control, Observer, RunEvent, RunView};

/// Shows the terminal dashboard while the supervisor runs. Call [`Dashboard::finish`] after
/// [`run`](super::run) returns: it ends the dashboard and restores the terminal.
#[derive(Default)]
pub struct Dashboard {
    stop: Arc<AtomicBool>,
    interrupt: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<DashExit>>>,
    /// Whether [`Control::Stop`] or [`Control::Kill`] was already returned.
    stop_sent: bool,
    kill_sent: bool,
    /// Why the dashboard could not start, reported by [`Dashboard::finish`].
    start_error: Option<String>,
}

impl Dashboard {
    /// Creates an observer that starts the dashboard when the run starts.
    pub fn new() -> Dashboard {
        Dashboard::default()
    }

    fn start(&mut self, run_dir: PathBuf) {
        let source = LiveSource::open(&run_dir, RunEnd::Flag(Arc::clone(&self.ended)));
        let mut source = match source {
            Ok(source) => source,
            Err(err) => {
                tracing::error!("cannot start the dashboard: {err}");
                self.start_error = Some(err.to_string());
                return;
            }
        };
        let stop = Arc::clone(&self.stop);
        let interrupt = Arc::clone(&self.interrupt);
        let log_path = RunDir::new(run_dir).log_path();
        self.thread = Some(std::thread::spawn(move || {
            let exit = run_dashboard(&mut source, &log_path, || {
                stop.store(true, Ordering::Release);
            })?;
            if exit == DashExit::Interrupted {
                interrupt.store(true, Ordering::Release);
            }
            Ok(exit)
        }));
    }

    /// Ends the dashboard after the run ended and waits until it restored the terminal.
    /// Returns how it ended (`None` when the run failed before its processes started), or
    /// why it failed.
    pub fn finish(mut self) -> Result<Option<DashExit>, String> {
        self.ended.store(true, Ordering::Release);
        if let Some(err) = self.start_error.take() {
            return Err(err);
        }
        let Some(thread) = self.thread.take() else {
            return Ok(None);
        };
        match thread.join() {
            Ok(Ok(exit)) => Ok(Some(exit)),
            Ok(Err(err)) => Err(format!("terminal error: {err}")),
            Err(_) => Err("the dashboard panicked".to_string()),
        }
    }
}

impl Observer for Dashboard {
    fn event(&mut self, event: &RunEvent) {
        // The supervisor logs every event to the run's log; the screen belongs to the
        // dashboard, which shows the log's tail.
        if let RunEvent::Starting { run_dir, .. } = event {
            self.start(run_dir.clone());
        }
    }

    fn tick(&mut self, _view: &RunView) -> Control {
        if self.interrupt.load(Ordering::Acquire) && !self.kill_sent {
            self.kill_sent = true;
            return Control::Kill;
        }
        if self.stop.load(Ordering::Acquire) && !self.stop_sent {
            self.stop_sent = true;
            return Control::Stop;
        }
        Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn empty_view() -> RunView {
        RunView {
            name: "g".to_string(),
            elapsed: Duration::ZERO,
            stages: Vec::new(),
            rings: Vec::new(),
        }
    }

    #[test]
    fn tick_sends_stop_then_kill_once() {
        let mut dashboard = Dashboard::new();
        let view = empty_view();
        assert_eq!(dashboard.tick(&view), Control::Continue);

        dashboard.stop.store(true, Ordering::Release);
        assert_eq!(dashboard.tick(&view), Control::Stop);
        assert_eq!(
            dashboard.tick(&view),
            Control::Continue,
            "stop is sent once"
        );

        dashboard.interrupt.store(true, Ordering::Release);
        assert_eq!(dashboard.tick(&view), Control::Kill);
        assert_eq!(
            dashboard.tick(&view),
            Control::Continue,
            "kill is sent once"
        );
    }

    #[test]
    fn finish_without_start_is_none() {
        assert_eq!(Dashboard::new().finish(), Ok(None));
    }

    #[test]
    fn run_dir_without_layout_is_reported() {
        let mut dashboard = Dashboard::new();
        dashboard.event(&RunEvent::Starting {
            run_dir: PathBuf::from("/nonexistent/ccssl-run"),
            processes: 1,
        });
        let err = dashboard.finish().expect_err("no layout.json");
        assert!(err.contains("layout.json"), "{err}");
    }
}
