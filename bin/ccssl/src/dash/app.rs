//! Dashboard state: the sample window, chart history, log tail and the key handling that
//! moves between modes.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::{EvalPoint, Sample, TrainGauges};
use super::view::{DerivedView, ViewConfig, Window};

/// Training points kept for the charts. When full, every second point is dropped, so a long run
/// keeps its whole curve at a coarser spacing.
pub const CHART_CAPACITY: usize = 1024;

/// Screen state drawn over the panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Running,
    /// `q` was pressed; waiting for `y` or `n`.
    ConfirmQuit,
    Help,
}

/// Request to the caller after a key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// The user confirmed `q` or pressed Ctrl-C once: stop the run gracefully (the step stage
    /// finishes its step and the final checkpoint is written).
    StopRequested,
    /// Ctrl-C while a stop is already under way: the caller kills the stages.
    Interrupt,
    /// Leave the dashboard and keep the run as it is (attached dashboards).
    Detach,
}

/// Effect of a confirmed `q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuitBehavior {
    /// The dashboard belongs to the supervisor: `q` stops the run.
    StopRun,
    /// The dashboard watches another process's run read-only: `q` only leaves.
    Detach,
}

/// Chart shown in the chart panel; left and right arrows cycle through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Losses,
    MaskRatio,
    PseudoLabelAccuracy,
    EvalTop1,
}

impl ChartKind {
    pub const ALL: [ChartKind; 4] = [
        Self::Losses,
        Self::MaskRatio,
        Self::PseudoLabelAccuracy,
        Self::EvalTop1,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Losses => "losses",
            Self::MaskRatio => "mask ratio",
            Self::PseudoLabelAccuracy => "pseudo-label accuracy",
            Self::EvalTop1 => "eval top-1",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }

    /// Position counted from 1, for the chart title.
    pub fn number(self) -> usize {
        self.index() + 1
    }

    fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    fn previous(self) -> Self {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// Dashboard state. Rendering is `impl Widget for &App` in the `render` module.
#[derive(Debug, Clone)]
pub struct App {
    pub(super) mode: Mode,
    pub(super) quit: QuitBehavior,
    window: Window,
    pub(super) view: Option<DerivedView>,
    /// `(step, gauges)` in step order, thinned as described at [`CHART_CAPACITY`].
    pub(super) train_history: Vec<(u64, TrainGauges)>,
    /// Every second step is kept once thinned; 1 while nothing was dropped.
    history_stride: u64,
    /// Evaluations merged by step, in step order.
    pub(super) evals: Vec<EvalPoint>,
    pub(super) chart: ChartKind,
    pub(super) log_lines: Vec<String>,
    pub(super) stopping: bool,
    pub(super) source_error: Option<String>,
}

impl App {
    pub fn new(quit: QuitBehavior, config: ViewConfig) -> Self {
        Self {
            mode: Mode::Running,
            quit,
            window: Window::new(config),
            view: None,
            train_history: Vec::new(),
            history_stride: 1,
            evals: Vec::new(),
            chart: ChartKind::Losses,
            log_lines: Vec::new(),
            stopping: false,
            source_error: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn chart(&self) -> ChartKind {
        self.chart
    }

    pub fn view(&self) -> Option<&DerivedView> {
        self.view.as_ref()
    }

    /// True once a stop was requested; the header then says so.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Adds a sample, recomputes the view and extends the chart history.
    pub fn push_sample(&mut self, sample: Sample) {
        self.source_error = None;
        let step = sample.run.step;
        if let Some(gauges) = sample.train {
            self.record_train(step, gauges);
        }
        for eval in &sample.evals {
            match self.evals.binary_search_by_key(&eval.step, |e| e.step) {
                Ok(index) => self.evals[index] = *eval,
                Err(index) => self.evals.insert(index, *eval),
            }
        }
        self.window.push(sample);
        self.view = self.window.view();
    }

    fn record_train(&mut self, step: u64, gauges: TrainGauges) {
        let newer = self.train_history.last().is_none_or(|&(s, _)| step > s);
        let on_stride = step.is_multiple_of(self.history_stride);
        if !newer || (!on_stride && !self.train_history.is_empty()) {
            return;
        }
        self.train_history.push((step, gauges));
        if self.train_history.len() > CHART_CAPACITY {
            self.history_stride *= 2;
            let stride = self.history_stride;
            let last = self.train_history.pop();
            self.train_history
                .retain(|&(s, _)| s.is_multiple_of(stride));
            // The newest point stays so the chart always reaches the current step.
            self.train_history.extend(last);
        }
    }

    /// Shows a source error in the header until the next good sample.
    pub fn set_source_error(&mut self, message: String) {
        self.source_error = Some(message);
    }

    pub fn set_log_lines(&mut self, lines: Vec<String>) {
        self.log_lines = lines;
    }

    /// Marks the run as stopping, for a stop requested outside the dashboard (a signal).
    pub fn mark_stopping(&mut self) {
        self.stopping = true;
    }

    /// Applies one key press and returns what the caller must do.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return self.interrupt();
        }
        match self.mode {
            Mode::Running => self.key_running(key.code),
            Mode::ConfirmQuit => self.key_confirm(key.code),
            Mode::Help => {
                if matches!(key.code, KeyCode::Char('?' | 'q') | KeyCode::Esc) {
                    self.mode = Mode::Running;
                }
                Action::None
            }
        }
    }

    /// Ctrl-C arrives as a key while the terminal is in raw mode: the first one stops
    /// gracefully without asking, a second one interrupts.
    fn interrupt(&mut self) -> Action {
        self.mode = Mode::Running;
        match self.quit {
            QuitBehavior::Detach => Action::Detach,
            QuitBehavior::StopRun if self.stopping => Action::Interrupt,
            QuitBehavior::StopRun => {
                self.stopping = true;
                Action::StopRequested
            }
        }
    }

    fn key_running(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Char('q') | KeyCode::Esc => self.mode = Mode::ConfirmQuit,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Right => self.chart = self.chart.next(),
            KeyCode::Left => self.chart = self.chart.previous(),
            _ => {}
        }
        Action::None
    }

    fn key_confirm(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                self.mode = Mode::Running;
                match self.quit {
                    QuitBehavior::Detach => Action::Detach,
                    // A second confirmed `q` while stopping leaves the dashboard; the run
                    // keeps stopping without it.
                    QuitBehavior::StopRun if self.stopping => Action::Detach,
                    QuitBehavior::StopRun => {
                        self.stopping = true;
                        Action::StopRequested
                    }
                }
            }
            KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => {
                self.mode = Mode::Running;
                Action::None
            }
            _ => Action::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::testdata::four_stages;

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn ctrl_c(app: &mut App) -> Action {
        app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))
    }

    #[test]
    fn quit_needs_confirmation() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::None);
        assert_eq!(app.mode(), Mode::ConfirmQuit);
        assert_eq!(press(&mut app, KeyCode::Char('n')), Action::None);
        assert_eq!(app.mode(), Mode::Running);
        assert!(!app.is_stopping());

        press(&mut app, KeyCode::Char('q'));
        assert_eq!(press(&mut app, KeyCode::Char('y')), Action::StopRequested);
        assert_eq!(app.mode(), Mode::Running);
        assert!(app.is_stopping());
    }

    #[test]
    fn confirmed_quit_while_stopping_detaches() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        press(&mut app, KeyCode::Char('q'));
        press(&mut app, KeyCode::Char('y'));
        press(&mut app, KeyCode::Char('q'));
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Detach);
    }

    #[test]
    fn attached_quit_detaches() {
        let mut app = App::new(QuitBehavior::Detach, ViewConfig::default());
        press(&mut app, KeyCode::Char('q'));
        assert_eq!(press(&mut app, KeyCode::Char('y')), Action::Detach);
        assert!(!app.is_stopping());
        assert_eq!(ctrl_c(&mut app), Action::Detach);
    }

    #[test]
    fn ctrl_c_stops_then_interrupts() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        press(&mut app, KeyCode::Char('?'));
        assert_eq!(ctrl_c(&mut app), Action::StopRequested);
        assert_eq!(app.mode(), Mode::Running);
        assert_eq!(ctrl_c(&mut app), Action::Interrupt);
    }

    #[test]
    fn help_toggles() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        press(&mut app, KeyCode::Char('?'));
        assert_eq!(app.mode(), Mode::Help);
        // `q` inside help closes help rather than asking to quit.
        press(&mut app, KeyCode::Char('q'));
        assert_eq!(app.mode(), Mode::Running);
    }

    #[test]
    fn arrows_cycle_charts() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        assert_eq!(app.chart(), ChartKind::Losses);
        press(&mut app, KeyCode::Left);
        assert_eq!(app.chart(), ChartKind::EvalTop1);
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Right);
        assert_eq!(app.chart(), ChartKind::MaskRatio);
    }

    #[test]
    fn samples_fill_history_and_evals() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        for sample in four_stages() {
            app.push_sample(sample);
        }
        let steps: Vec<u64> = app.train_history.iter().map(|&(s, _)| s).collect();
        assert_eq!(steps, [100, 110, 120]);
        // Two samples carried the same evaluation; it is kept once.
        assert_eq!(app.evals.len(), 1);
        assert_eq!(app.view().unwrap().step, 120);
    }

    #[test]
    fn history_thins_at_capacity() {
        let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
        let gauges = four_stages()[0].train.unwrap();
        for step in 1..=(3 * CHART_CAPACITY as u64) {
            app.record_train(step, gauges);
        }
        assert!(app.train_history.len() <= CHART_CAPACITY + 1);
        assert!(app.train_history.len() > CHART_CAPACITY / 4);
        assert_eq!(app.train_history.first().map(|p| p.0), Some(4));
        assert_eq!(
            app.train_history.last().map(|p| p.0),
            Some(3 * CHART_CAPACITY as u64)
        );
        let steps: Vec<u64> = app.train_history.iter().map(|p| p.0).collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
    }
}
