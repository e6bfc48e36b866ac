//! Stage and ring tables. Columns are dropped, least important first, as the terminal narrows.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table, Widget};

use crate::dash::app::App;
use crate::dash::format;
use crate::dash::view::{Bottleneck, DisplayState, EdgeView, StageView};

/// Marks the bottleneck stage's row.
pub(crate) const BOTTLENECK_MARKER: &str = "▶";
/// Cells of the ring occupancy bar.
const BAR_WIDTH: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageColumn {
    Marker,
    Name,
    State,
    Pid,
    Replicas,
    Items,
    Images,
    Busy,
    InWait,
    OutWait,
    Restarts,
}

use StageColumn as C;

const ALL_STAGE_COLUMNS: &[StageColumn] = &[
    C::Marker,
    C::Name,
    C::State,
    C::Pid,
    C::Replicas,
    C::Items,
    C::Images,
    C::Busy,
    C::InWait,
    C::OutWait,
    C::Restarts,
];
const MEDIUM_STAGE_COLUMNS: &[StageColumn] = &[
    C::Marker,
    C::Name,
    C::State,
    C::Items,
    C::Busy,
    C::InWait,
    C::OutWait,
];
const NARROW_STAGE_COLUMNS: &[StageColumn] = &[C::Marker, C::Name, C::State, C::Busy];

/// Column set that fits `inner_width` with a stage name of at least 8 characters.
fn stage_columns(inner_width: u16) -> &'static [StageColumn] {
    if inner_width >= 78 {
        ALL_STAGE_COLUMNS
    } else if inner_width >= 46 {
        MEDIUM_STAGE_COLUMNS
    } else {
        NARROW_STAGE_COLUMNS
    }
}

impl StageColumn {
    fn header(self) -> &'static str {
        match self {
            C::Marker => "",
            C::Name => "stage",
            C::State => "state",
            C::Pid => "pid",
            C::Replicas => "rep",
            C::Items => "items/s",
            C::Images => "img/s",
            C::Busy => "busy%",
            C::InWait => "in-w%",
            C::OutWait => "out-w%",
            C::Restarts => "rst",
        }
    }

    /// Header text, right-aligned over numeric columns like their values.
    fn header_cell(self) -> Cell<'static> {
        match self {
            C::Marker | C::Name | C::State => Cell::from(self.header()),
            _ => Cell::from(Line::from(self.header()).right_aligned()),
        }
    }

    fn width(self) -> Constraint {
        match self {
            C::Marker => Constraint::Length(1),
            C::Name => Constraint::Min(8),
            C::State => Constraint::Length(8),
            C::Pid => Constraint::Length(7),
            C::Replicas => Constraint::Length(3),
            C::Items | C::Images => Constraint::Length(7),
            C::Busy | C::InWait => Constraint::Length(5),
            C::OutWait => Constraint::Length(6),
            C::Restarts => Constraint::Length(3),
        }
    }

    fn cell(self, stage: &StageView, bottleneck: bool) -> Cell<'static> {
        let right = |text: String| Cell::from(Line::from(text).right_aligned());
        match self {
            C::Marker if bottleneck => Cell::from(BOTTLENECK_MARKER).fg(Color::Red),
            C::Marker => Cell::from(""),
            C::Name if bottleneck => Cell::from(stage.name.clone()).bold().fg(Color::Red),
            C::Name => Cell::from(stage.name.clone()),
            C::State => Cell::from(stage.state.label()).style(state_style(stage.state)),
            C::Pid => right(pid_text(&stage.pids)),
            C::Replicas => right(format!("{}/{}", stage.replicas_alive, stage.replicas)),
            C::Items => right(format::rate(stage.items_per_s)),
            C::Images => right(format::rate(stage.images_per_s)),
            C::Busy => right(format::percent(stage.busy)),
            C::InWait => right(format::percent(stage.blocked_in)),
            C::OutWait => right(format::percent(stage.blocked_out)),
            C::Restarts => right(stage.restarts.to_string()),
        }
    }
}

/// Formats the first pid, followed by `+N` for further replicas.
fn pid_text(pids: &[u32]) -> String {
    match pids {
        [] => "-".to_owned(),
        [pid] => pid.to_string(),
        [pid, rest @ ..] => format!("{pid}+{}", rest.len()),
    }
}

fn state_style(state: DisplayState) -> Style {
    let color = match state {
        DisplayState::Running => Color::Green,
        DisplayState::Starting | DisplayState::Stopping => Color::Yellow,
        DisplayState::Stalled | DisplayState::Failed => Color::Red,
        DisplayState::Stopped => Color::DarkGray,
    };
    Style::new().fg(color)
}

pub(super) fn render_stages(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(" stages ");
    let columns = stage_columns(block.inner(area).width);
    let stages = app.view.as_ref().map_or(&[][..], |v| &v.stages[..]);
    let bottleneck = app.view.as_ref().and_then(|v| v.bottleneck.as_ref());
    let rows = stages.iter().map(|stage| {
        let marked = bottleneck.is_some_and(|b| b.stage == stage.name);
        Row::new(columns.iter().map(|c| c.cell(stage, marked)))
    });
    let header = Row::new(columns.iter().map(|c| c.header_cell())).bold();
    Table::new(rows, columns.iter().map(|c| c.width()))
        .header(header)
        .column_spacing(1)
        .block(block)
        .render(area, buf);
}

/// Occupancy as a bar of [`BAR_WIDTH`] cells, full cells rounded to nearest.
pub(crate) fn occupancy_bar(occupancy: f64) -> String {
    let full = ((occupancy.clamp(0.0, 1.0) * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    format!("{}{}", "█".repeat(full), "░".repeat(BAR_WIDTH - full))
}

fn edge_row(edge: &EdgeView, wide: bool) -> Row<'static> {
    let right = |text: String| Cell::from(Line::from(text).right_aligned());
    let mut cells = vec![Cell::from(edge.name.clone())];
    if wide {
        cells.push(Cell::from(format!("{} → {}", edge.from, edge.to)));
    }
    cells.push(Cell::from(occupancy_bar(edge.occupancy)).fg(Color::Cyan));
    cells.push(right(format!("{}/{}", edge.filled, edge.slot_count)));
    cells.push(right(format::percent(edge.backpressure)));
    if wide {
        cells.push(right(format::percent(edge.starvation)));
    }
    Row::new(cells)
}

/// Builds the ring table's bottom title naming the bottleneck, with its numbers when they fit in
/// `width`.
fn bottleneck_title(bottleneck: Option<&Bottleneck>, width: u16) -> Line<'static> {
    let Some(b) = bottleneck else {
        return Line::from(" bottleneck: none ");
    };
    let full = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |f| format!("{:.0}%", f * 100.0));
    let long = format!(
        " {BOTTLENECK_MARKER} bottleneck: {} (busy {:.0}%, inputs {} full, outputs {} full) ",
        b.stage,
        b.busy * 100.0,
        full(b.input_full),
        full(b.output_full),
    );
    let text = if long.chars().count() + 2 <= usize::from(width) {
        long
    } else {
        format!(" {BOTTLENECK_MARKER} bottleneck: {} ", b.stage)
    };
    Line::from(text).fg(Color::Red)
}

/// Header cells and widths of the ring table; narrow tables drop the route and `wait%`.
fn edge_columns(wide: bool, route_width: u16) -> (Vec<Cell<'static>>, Vec<Constraint>) {
    let left = |text| Cell::from(text);
    let right = |text| Cell::from(Line::from(text).right_aligned());
    let mut columns = vec![(left("ring"), Constraint::Min(8))];
    if wide {
        columns.push((left("from → to"), Constraint::Length(route_width)));
    }
    columns.push((left("occupancy"), Constraint::Length(BAR_WIDTH as u16)));
    columns.push((right("fill"), Constraint::Length(7)));
    columns.push((right("bp%"), Constraint::Length(5)));
    if wide {
        columns.push((right("wait%"), Constraint::Length(5)));
    }
    columns.into_iter().unzip()
}

pub(super) fn render_edges(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(view) = &app.view else { return };
    let block = Block::bordered()
        .title(" rings ")
        .title_bottom(bottleneck_title(view.bottleneck.as_ref(), area.width));
    let wide = block.inner(area).width >= 70;
    let route_width = view.edges.iter().map(|e| e.from.len() + e.to.len() + 3);
    let route_width = route_width.max().unwrap_or(0).min(30) as u16;
    let (header, widths) = edge_columns(wide, route_width);

    let rows = view.edges.iter().map(|e| edge_row(e, wide));
    Table::new(rows, widths)
        .header(Row::new(header).bold())
        .column_spacing(1)
        .block(block)
        .render(area, buf);
}
