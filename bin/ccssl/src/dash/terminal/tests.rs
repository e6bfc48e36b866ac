//! The event loop runs against a ratatui test backend with scripted key events and a zero
//! sample interval, so each loop turn takes exactly one sample and one event.

use std::collections::VecDeque;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;

use super::*;
use crate::dash::model::{RecordedSource, Sample};
use crate::dash::testdata::four_stages;

fn key(code: KeyCode) -> Option<Event> {
    Some(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ctrl_c() -> Option<Event> {
    Some(Event::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )))
}

/// Runs the loop over `source` with one scripted event per turn, then `None` events.
/// Returns the exit, the number of `stop` calls and the last drawn screen.
fn run_loop(
    source: &mut dyn MetricsSource,
    quit: QuitBehavior,
    events: Vec<Option<Event>>,
    log_path: &Path,
) -> (DashExit, usize, Vec<String>) {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut script: VecDeque<Option<Event>> = events.into();
    let mut stops = 0;
    let mut io = LoopIo {
        terminal: &mut terminal,
        next_event: |_| Ok(script.pop_front().flatten()),
        sample_interval: Duration::ZERO,
    };
    let app = App::new(quit, ViewConfig::default());
    let exit = event_loop(&mut io, app, source, log_path, || stops += 1).unwrap();
    let buffer = terminal.backend().buffer();
    let lines = (0..24)
        .map(|y| (0..80).map(|x| buffer[(x, y)].symbol()).collect())
        .collect();
    (exit, stops, lines)
}

fn no_log() -> PathBuf {
    PathBuf::from("/nonexistent/ccssl/run.log")
}

#[test]
fn confirmed_quit_calls_stop_then_runs_to_end() {
    let mut source = RecordedSource::from_samples(four_stages());
    let events = vec![key(KeyCode::Char('q')), key(KeyCode::Char('y'))];
    let (exit, stops, lines) = run_loop(&mut source, QuitBehavior::StopRun, events, &no_log());
    assert_eq!(exit, DashExit::RunEnded);
    assert_eq!(stops, 1);
    assert!(lines[0].contains("stopping: waiting for the final checkpoint"));
    // The last screen shows the last sample.
    assert!(
        lines[1].starts_with(" step 120/10000 (1.2%)"),
        "{}",
        lines[1]
    );
}

#[test]
fn declined_quit_does_not_stop() {
    let mut source = RecordedSource::from_samples(four_stages());
    let events = vec![key(KeyCode::Char('q')), key(KeyCode::Char('n'))];
    let (exit, stops, _) = run_loop(&mut source, QuitBehavior::StopRun, events, &no_log());
    assert_eq!(exit, DashExit::RunEnded);
    assert_eq!(stops, 0);
}

#[test]
fn attached_quit_detaches_without_stop() {
    let mut source = RecordedSource::from_samples(four_stages());
    let events = vec![key(KeyCode::Char('q')), key(KeyCode::Char('y'))];
    let (exit, stops, _) = run_loop(&mut source, QuitBehavior::Detach, events, &no_log());
    assert_eq!(exit, DashExit::Detached);
    assert_eq!(stops, 0);
}

#[test]
fn second_ctrl_c_interrupts() {
    let mut source = RecordedSource::from_samples(four_stages());
    let (exit, stops, _) = run_loop(
        &mut source,
        QuitBehavior::StopRun,
        vec![ctrl_c(), ctrl_c()],
        &no_log(),
    );
    assert_eq!(exit, DashExit::Interrupted);
    assert_eq!(stops, 1);
}

/// Fails once with a transient error, then ends.
struct FlakySource {
    failed: bool,
}

impl MetricsSource for FlakySource {
    fn sample(&mut self) -> Result<Sample, SourceError> {
        if std::mem::replace(&mut self.failed, true) {
            Err(SourceError::Ended)
        } else {
            Err(SourceError::Unavailable {
                reason: "segment ccssl-7-raw.0 missing".to_owned(),
            })
        }
    }
}

#[test]
fn source_error_shown_and_retried() {
    let mut source = FlakySource { failed: false };
    let (exit, _, lines) = run_loop(&mut source, QuitBehavior::StopRun, vec![], &no_log());
    assert_eq!(exit, DashExit::RunEnded);
    assert!(
        lines[0].contains("metrics unavailable: segment ccssl-7-raw.0 missing"),
        "{}",
        lines[0]
    );
}

#[test]
fn log_tail_comes_from_file() {
    let dir = std::env::temp_dir().join(format!("ccssl-dash-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("run.log");
    std::fs::write(&log, "first line\nWARN augment: slow batch 17\n").unwrap();

    let mut source = RecordedSource::from_samples(four_stages());
    let (_, _, lines) = run_loop(&mut source, QuitBehavior::StopRun, vec![], &log);
    assert!(
        lines[18].ends_with("│first line                        │"),
        "{}",
        lines[18]
    );
    assert!(
        lines[19].contains("│WARN augment: slow batch 17"),
        "{}",
        lines[19]
    );
}

#[test]
fn headless_prints_one_line_per_sample() {
    let mut source = RecordedSource::from_samples(four_stages());
    let mut out = Vec::new();
    run_headless(&mut source, Duration::ZERO, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("step 100/10000 (1.0%) | - img/s | ETA - |"));
    assert!(lines[2].starts_with("step 120/10000 (1.2%) | 5120 img/s | ETA 0:16:28 |"));
}
