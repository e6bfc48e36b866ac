//! The chart panel: one chart at a time, chosen with the arrow keys.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph, Widget};

use crate::dash::app::{App, ChartKind};
use crate::dash::format;

/// One named line of a chart.
struct Series {
    name: &'static str,
    color: Color,
    points: Vec<(f64, f64)>,
}

/// Series of the chosen chart, y values in the unit the chart shows (percent for shares).
/// Non-finite values (a diverged loss) are left out; the header and headless line still show
/// them as `NaN` or `inf`.
fn series(app: &App) -> Vec<Series> {
    let train = |name, color, value: fn(&crate::dash::TrainGauges) -> f64| Series {
        name,
        color,
        points: app
            .train_history
            .iter()
            .map(|(step, g)| (*step as f64, value(g)))
            .filter(|p| p.1.is_finite())
            .collect(),
    };
    match app.chart {
        ChartKind::Losses => vec![
            train("total", Color::White, |g| g.loss),
            train("Lx", Color::Cyan, |g| g.loss_x),
            train("Lu", Color::Yellow, |g| g.loss_u),
            train("Lc", Color::Magenta, |g| g.loss_c),
        ],
        ChartKind::MaskRatio => vec![train("mask %", Color::Cyan, |g| g.mask_ratio * 100.0)],
        ChartKind::PseudoLabelAccuracy => {
            vec![train("accuracy %", Color::Green, |g| {
                g.pseudo_label_acc * 100.0
            })]
        }
        ChartKind::EvalTop1 => {
            let eval = |name, color, value: fn(&crate::dash::EvalPoint) -> f64| Series {
                name,
                color,
                points: app
                    .evals
                    .iter()
                    .map(|e| (e.step as f64, value(e)))
                    .collect(),
            };
            vec![
                eval("EMA %", Color::Green, |e| e.top1_ema),
                eval("raw %", Color::Yellow, |e| e.top1_raw),
            ]
        }
    }
}

/// `(min, max)` of the points' coordinates, widened so neither span is empty.
fn bounds(series: &[Series], coordinate: fn(&(f64, f64)) -> f64) -> [f64; 2] {
    let values = series.iter().flat_map(|s| s.points.iter().map(coordinate));
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if high > low {
        [low, high]
    } else {
        [low - 1.0, low + 1.0]
    }
}

pub(super) fn render_chart(app: &App, area: Rect, buf: &mut Buffer) {
    let title = format!(
        " ◀ {} ({}/{}) ▶ ",
        app.chart.title(),
        app.chart.number(),
        ChartKind::ALL.len()
    );
    let block = Block::bordered().title(title);
    let series = series(app);
    if series.iter().all(|s| s.points.is_empty()) {
        let empty = if app.chart == ChartKind::EvalTop1 {
            "no evaluation yet"
        } else {
            "no training step logged yet"
        };
        Paragraph::new(empty).block(block).render(area, buf);
        return;
    }
    line_chart(&series).block(block).render(area, buf);
}

/// Builds a chart of non-empty series, the axes spanning their points.
fn line_chart(series: &[Series]) -> Chart<'_> {
    let [x_low, x_high] = bounds(series, |p| p.0);
    let [y_low, y_high] = bounds(series, |p| p.1);
    let datasets = series
        .iter()
        .map(|s| {
            Dataset::default()
                .name(s.name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(s.color))
                .data(&s.points)
        })
        .collect();
    let x_labels = [format!("{x_low:.0}"), format!("{x_high:.0}")];
    let y_labels = [format::value(y_low), format::value(y_high)].map(Line::from);
    Chart::new(datasets)
        .legend_position(Some(LegendPosition::TopRight))
        .hidden_legend_constraints((Constraint::Ratio(1, 3), Constraint::Ratio(2, 3)))
        .x_axis(Axis::default().bounds([x_low, x_high]).labels(x_labels))
        .y_axis(Axis::default().bounds([y_low, y_high]).labels(y_labels))
}
