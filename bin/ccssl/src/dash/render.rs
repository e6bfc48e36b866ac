//! Drawing of the dashboard: `impl Widget for &App`, one small function per panel.
//!
//! Layout, top to bottom: a two-line header, the stage table, the ring table, then the charts
//! and the log tail. Panels that do not fit are dropped whole, charts first, then the log, then
//! the ring table, so a small terminal shows fewer panels rather than squeezed ones.
//! [`plan_layout`] contains the rules. Below [`MIN_WIDTH`] x [`MIN_HEIGHT`] only a message is drawn.

mod charts;
mod tables;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use super::app::{App, Mode, QuitBehavior};
use super::format;
use super::view::{
    BOTTLENECK_MAX_OUTPUT_FULL, BOTTLENECK_MIN_BUSY, BOTTLENECK_MIN_INPUT_FULL, DisplayState,
};

/// Smallest terminal the panels are drawn in.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;
/// Width from which charts and log sit side by side even when there is height to stack them.
const SIDE_BY_SIDE_WIDTH: u16 = 120;
/// Height of the bottom area from which charts and log are stacked on terminals narrower than
/// [`SIDE_BY_SIDE_WIDTH`].
const STACK_MIN_HEIGHT: u16 = 14;
/// Smallest chart panel: borders, three plot rows and the axis.
const CHART_MIN_HEIGHT: u16 = 6;
const LOG_MIN_HEIGHT: u16 = 3;

/// Panel areas; `None` marks a dropped panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panels {
    pub header: Rect,
    pub stages: Rect,
    pub edges: Option<Rect>,
    pub charts: Option<Rect>,
    pub log: Option<Rect>,
}

/// Places the panels for a terminal area and the table row counts.
///
/// Header and stage table always get their rows (the table is clipped if even that does not
/// fit). The ring table follows when all its rows fit. The rest goes to charts and log. They
/// sit side by side from 120 columns, or from 80 columns when the rest is under 14 rows.
/// Otherwise they are stacked (charts above) when the rest has at least 14 rows, and below
/// that the log is alone.
pub fn plan_layout(area: Rect, stage_rows: usize, edge_rows: usize) -> Panels {
    let table_height = |rows: usize| u16::try_from(rows + 3).unwrap_or(u16::MAX);
    let [header, rest] = Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(area);
    let stages_height = table_height(stage_rows).min(rest.height);
    let [stages, mut rest] =
        Layout::vertical([Constraint::Length(stages_height), Constraint::Fill(1)]).areas(rest);

    let mut edges = None;
    if edge_rows > 0 && table_height(edge_rows) <= rest.height {
        let [top, bottom] = Layout::vertical([
            Constraint::Length(table_height(edge_rows)),
            Constraint::Fill(1),
        ])
        .areas(rest);
        edges = Some(top);
        rest = bottom;
    }

    let (charts, log) = plan_bottom(rest);
    Panels {
        header,
        stages,
        edges,
        charts,
        log,
    }
}

fn plan_bottom(area: Rect) -> (Option<Rect>, Option<Rect>) {
    let wide = area.width >= SIDE_BY_SIDE_WIDTH;
    let side_by_side = area.height >= CHART_MIN_HEIGHT
        && area.width >= 80
        && (wide || area.height < STACK_MIN_HEIGHT);
    if side_by_side {
        let [charts, log] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(area);
        (Some(charts), Some(log))
    } else if area.height >= STACK_MIN_HEIGHT {
        let log_height = (area.height / 3).max(LOG_MIN_HEIGHT + 1);
        let [charts, log] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(log_height)]).areas(area);
        (Some(charts), Some(log))
    } else if area.height >= LOG_MIN_HEIGHT {
        (None, Some(area))
    } else {
        (None, None)
    }
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            render_too_small(area, buf);
            return;
        }
        let stage_rows = self.view.as_ref().map_or(0, |v| v.stages.len());
        let edge_rows = self.view.as_ref().map_or(0, |v| v.edges.len());
        let panels = plan_layout(area, stage_rows, edge_rows);
        render_header(self, panels.header, buf);
        tables::render_stages(self, panels.stages, buf);
        if let Some(rect) = panels.edges {
            tables::render_edges(self, rect, buf);
        }
        if let Some(rect) = panels.charts {
            charts::render_chart(self, rect, buf);
        }
        if let Some(rect) = panels.log {
            render_log(self, rect, buf);
        }
        match self.mode {
            Mode::Running => {}
            Mode::ConfirmQuit => render_confirm(self, area, buf),
            Mode::Help => render_help(self.quit, area, buf),
        }
    }
}

fn render_too_small(area: Rect, buf: &mut Buffer) {
    let message = format!(
        "terminal too small: {}x{}; the dashboard needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
        area.width, area.height
    );
    Paragraph::new(message)
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

fn render_header(app: &App, area: Rect, buf: &mut Buffer) {
    let [title_row, progress_row] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let (run, graph) = app
        .view
        .as_ref()
        .map_or(("-", "-"), |v| (v.run_name.as_str(), v.graph_file.as_str()));
    let title = [
        Span::from(" ccssl ").bold().reversed(),
        Span::from(format!(" run {run} ")).bold(),
        status_span(app),
        Span::from(format!("  graph {graph}")),
    ];
    fitting_line(title, title_row.width).render(title_row, buf);
    let progress = progress_fields(app).into_iter().map(Span::from);
    fitting_line(progress, progress_row.width).render(progress_row, buf);
}

/// Keeps the leading spans that fit in `width` whole, so a narrow header drops fields instead of
/// cutting one in the middle.
fn fitting_line<'a>(spans: impl IntoIterator<Item = Span<'a>>, width: u16) -> Line<'a> {
    let mut used = 0;
    let mut line = Line::default();
    for span in spans {
        used += span.width();
        if used > usize::from(width) {
            break;
        }
        line.push_span(span);
    }
    line
}

/// Builds the title row's status: a source error, the stop under way, or the key hint.
fn status_span(app: &App) -> Span<'static> {
    if let Some(error) = &app.source_error {
        Span::from(format!(" {error}")).fg(Color::Red)
    } else if app.stopping || any_stage_stopping(app) {
        Span::from(" stopping: waiting for the final checkpoint").fg(Color::Yellow)
    } else {
        Span::from(" ? help  q quit").dim()
    }
}

/// True when a stage reports `stopping`, so an attached dashboard shows a stop requested by
/// another process.
fn any_stage_stopping(app: &App) -> bool {
    let stages = app.view.as_ref().map_or(&[][..], |v| &v.stages[..]);
    stages.iter().any(|s| s.state == DisplayState::Stopping)
}

/// Fields of the progress row, most important first, each with its leading space.
fn progress_fields(app: &App) -> Vec<String> {
    let Some(view) = &app.view else {
        return vec![" waiting for the first metrics sample".to_owned()];
    };
    let done = view.step as f64 * 100.0 / view.total_steps.max(1) as f64;
    let eta = view.eta_ns.map_or_else(|| "-".to_owned(), format::duration);
    vec![
        format!(" step {}/{} ({done:.1}%)", view.step, view.total_steps),
        format!("  ETA {eta}"),
        format!("  {} img/s", format::rate(view.images_per_s)),
        format!("  lr {}", format::value(view.lr)),
        format!("  elapsed {}", format::duration(view.elapsed_ns)),
    ]
}

fn render_log(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(" log ");
    let visible = usize::from(block.inner(area).height);
    let skip = app.log_lines.len().saturating_sub(visible);
    let lines: Vec<Line> = app.log_lines[skip..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    Paragraph::new(lines).block(block).render(area, buf);
}

/// Draws `lines` in a bordered box centered on `area`, clearing what is below it.
fn render_popup(title: &str, lines: Vec<Line>, area: Rect, buf: &mut Buffer) {
    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 4;
    let width = u16::try_from(width).unwrap_or(u16::MAX).min(area.width);
    let height = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
    Clear.render(popup, buf);
    let block = Block::bordered()
        .title(format!(" {title} "))
        .border_style(Style::new().fg(Color::Yellow));
    Paragraph::new(lines)
        .block(block.padding(ratatui::widgets::Padding::horizontal(1)))
        .render(popup, buf);
}

fn render_confirm(app: &App, area: Rect, buf: &mut Buffer) {
    let (title, lines) = match (app.quit, app.stopping) {
        (QuitBehavior::StopRun, false) => (
            "Stop the run?",
            vec![
                "The step stage finishes its current step,",
                "then the final checkpoint is written.",
                "",
                "y: stop the run    n: keep running",
            ],
        ),
        (QuitBehavior::StopRun, true) | (QuitBehavior::Detach, _) => (
            "Leave the dashboard?",
            vec![
                "The run goes on without the dashboard.",
                "",
                "y: leave    n: stay",
            ],
        ),
    };
    let lines = lines.into_iter().map(Line::from).collect();
    render_popup(title, lines, area, buf);
}

fn render_help(quit: QuitBehavior, area: Rect, buf: &mut Buffer) {
    let busy = format!(
        "Bottleneck: busy >= {:.0}%, inputs >= {:.0}% full, outputs <= {:.0}% full",
        BOTTLENECK_MIN_BUSY * 100.0,
        BOTTLENECK_MIN_INPUT_FULL * 100.0,
        BOTTLENECK_MAX_OUTPUT_FULL * 100.0
    );
    // An attached dashboard (`ccssl dash`) only leaves; the run goes on.
    let (quit_line, interrupt_line) = match quit {
        QuitBehavior::StopRun => (
            "q / Esc     quit: stop the run (asks first)",
            "Ctrl-C      stop now; twice: kill the stages",
        ),
        QuitBehavior::Detach => (
            "q / Esc     leave the dashboard (asks first)",
            "Ctrl-C      leave now; the run goes on",
        ),
    };
    let lines = vec![
        Line::from(quit_line).bold(),
        Line::from("<- / ->     switch chart"),
        Line::from("?           close this help"),
        Line::from(interrupt_line),
        Line::from(""),
        Line::from("busy%   share of time working on batches"),
        Line::from("in-w%   share of time waiting for input"),
        Line::from("out-w%  share of time waiting for a free output slot"),
        Line::from("bp%     share of time the ring's producer waited"),
        Line::from("wait%   share of time the ring's consumer waited"),
        Line::from(busy).add_modifier(Modifier::ITALIC),
    ];
    render_popup("help", lines, area, buf);
}

#[cfg(test)]
mod tests;
