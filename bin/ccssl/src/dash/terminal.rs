//! The interactive loop that owns the terminal, and the headless loop that prints progress
//! lines instead.

use std::io::{self, Write};
use std::panic::{self, PanicHookInfo};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};

use super::app::{Action, App, QuitBehavior};
use super::headless::format_progress_line;
use super::logtail::read_tail;
use super::model::{MetricsSource, SourceError};
use super::view::{ViewConfig, Window};

/// Maximum wait for a key before the loop checks whether a sample is due. 100 ms keeps keys
/// responsive without waking the process more than ten times a second.
pub const EVENT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How often the dashboard reads the metrics and the log. Rates do not depend on it, because
/// they come from the samples' own timestamps.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// Lines kept from the end of the log file; more than any terminal shows.
pub const LOG_TAIL_LINES: usize = 200;

/// Reason the dashboard returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashExit {
    /// The source reported the end of the run.
    RunEnded,
    /// The user left the dashboard; the run goes on (or keeps stopping).
    Detached,
    /// Ctrl-C was pressed while a stop was under way: the caller should kill the stages.
    Interrupted,
}

/// Shows the dashboard of the caller's own run until the run ends.
///
/// `stop` is called once when the user confirms `q` or presses Ctrl-C; the caller then stops
/// the run gracefully and the dashboard keeps showing it until `source` reports
/// [`SourceError::Ended`]. Other source errors are shown in the header and retried. The
/// terminal is restored on every return and on panic.
pub fn run_dashboard(
    source: &mut dyn MetricsSource,
    log_path: &Path,
    stop: impl FnMut(),
) -> io::Result<DashExit> {
    let app = App::new(QuitBehavior::StopRun, ViewConfig::default());
    with_terminal(|terminal| {
        let mut io = LoopIo {
            terminal,
            next_event: read_event,
            sample_interval: SAMPLE_INTERVAL,
        };
        event_loop(&mut io, app, source, log_path, stop)
    })
}

/// Shows the dashboard of a run owned by another process; `q` only leaves.
pub fn attach_dashboard(source: &mut dyn MetricsSource, log_path: &Path) -> io::Result<DashExit> {
    let app = App::new(QuitBehavior::Detach, ViewConfig::default());
    with_terminal(|terminal| {
        let mut io = LoopIo {
            terminal,
            next_event: read_event,
            sample_interval: SAMPLE_INTERVAL,
        };
        event_loop(&mut io, app, source, log_path, || {})
    })
}

fn read_event(timeout: Duration) -> io::Result<Option<Event>> {
    if event::poll(timeout)? {
        event::read().map(Some)
    } else {
        Ok(None)
    }
}

type PanicHook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Raw mode and the alternate screen while alive; a panic hook that restores the terminal
/// before the panic message prints, so the message is readable.
struct TerminalGuard {
    previous_hook: Arc<PanicHook>,
}

impl TerminalGuard {
    fn enter() -> io::Result<Self> {
        let previous_hook: Arc<PanicHook> = Arc::new(panic::take_hook());
        let chained = Arc::clone(&previous_hook);
        panic::set_hook(Box::new(move |info| {
            restore_terminal();
            chained(info);
        }));
        // Built before the terminal changes, so a failure below still restores it on drop.
        let guard = Self { previous_hook };
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        // The hook cannot be swapped while the thread panics; ours then stays and restoring
        // twice is harmless.
        if !std::thread::panicking() {
            drop(panic::take_hook());
            let previous = Arc::clone(&self.previous_hook);
            panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

fn restore_terminal() {
    if let Err(err) = disable_raw_mode() {
        tracing::warn!("failed to leave raw mode: {err}");
    }
    if let Err(err) = execute!(io::stdout(), LeaveAlternateScreen) {
        tracing::warn!("failed to leave the alternate screen: {err}");
    }
}

fn with_terminal<T>(
    body: impl FnOnce(&mut Terminal<CrosstermBackend<io::Stdout>>) -> io::Result<T>,
) -> io::Result<T> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    body(&mut terminal)
}

/// The loop's terminal, its input and its sampling pace; tests pass a test backend, scripted
/// events and a zero interval.
struct LoopIo<'t, B: Backend, E> {
    terminal: &'t mut Terminal<B>,
    /// Waits at most its argument for an input event.
    next_event: E,
    sample_interval: Duration,
}

/// Draws, reads keys and samples the source until the run ends or the user leaves.
fn event_loop<B, E>(
    io: &mut LoopIo<'_, B, E>,
    mut app: App,
    source: &mut dyn MetricsSource,
    log_path: &Path,
    mut stop: impl FnMut(),
) -> io::Result<DashExit>
where
    B: Backend,
    E: FnMut(Duration) -> io::Result<Option<Event>>,
{
    let mut next_sample = Instant::now();
    loop {
        if Instant::now() >= next_sample {
            match source.sample() {
                Ok(sample) => app.push_sample(sample),
                Err(SourceError::Ended) => return Ok(DashExit::RunEnded),
                Err(err) => {
                    tracing::warn!("dashboard sample failed: {err}");
                    app.set_source_error(err.to_string());
                }
            }
            match read_tail(log_path, LOG_TAIL_LINES) {
                Ok(lines) => app.set_log_lines(lines),
                Err(err) => app.set_log_lines(vec![format!(
                    "cannot read log {}: {err}",
                    log_path.display()
                )]),
            }
            next_sample = Instant::now() + io.sample_interval;
        }
        io.terminal
            .draw(|frame| frame.render_widget(&app, frame.area()))
            .map_err(|err| io::Error::other(err.to_string()))?;

        let wait = next_sample.saturating_duration_since(Instant::now());
        let Some(Event::Key(key)) = (io.next_event)(wait.min(EVENT_POLL_INTERVAL))? else {
            continue;
        };
        match app.handle_key(key) {
            Action::None => {}
            Action::StopRequested => {
                tracing::info!("stop requested from the dashboard");
                stop();
            }
            Action::Detach => return Ok(DashExit::Detached),
            Action::Interrupt => return Ok(DashExit::Interrupted),
        }
    }
}

/// Maximum time between two samples in headless mode; shorter print intervals sample as often
/// as they print.
pub const HEADLESS_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Prints a progress line to `out` every `every` until `source` reports the end of the run,
/// then prints a last line. Source errors are logged and retried.
pub fn run_headless(
    source: &mut dyn MetricsSource,
    every: Duration,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut window = Window::new(ViewConfig::default());
    let mut last_print: Option<Instant> = None;
    // True while the newest sample has not been printed.
    let mut unprinted = false;
    loop {
        match source.sample() {
            Ok(sample) => {
                window.push(sample);
                unprinted = true;
            }
            Err(SourceError::Ended) => break,
            Err(err) => tracing::warn!("progress sample failed: {err}"),
        }
        let due = last_print.is_none_or(|t| t.elapsed() >= every);
        if let (true, true, Some(view)) = (due, unprinted, window.view()) {
            writeln!(out, "{}", format_progress_line(&view))?;
            out.flush()?;
            last_print = Some(Instant::now());
            unprinted = false;
        }
        std::thread::sleep(every.min(HEADLESS_SAMPLE_INTERVAL));
    }
    // The final state, so the log ends with the last numbers.
    if let (true, Some(view)) = (unprinted, window.view()) {
        writeln!(out, "{}", format_progress_line(&view))?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tty_tests;
