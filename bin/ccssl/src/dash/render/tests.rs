//! Widget tests: the dashboard is drawn into a ratatui test backend from the recorded samples
//! in `testdata/four-stages.jsonl`, and the drawn lines are compared with the expected text.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::dash::model::Sample;
use crate::dash::testdata::four_stages;
use crate::dash::view::{DEFAULT_STALL_AFTER_NS, ViewConfig};

fn app_with(samples: Vec<Sample>) -> App {
    let mut app = App::new(QuitBehavior::StopRun, ViewConfig::default());
    for sample in samples {
        app.push_sample(sample);
    }
    app.set_log_lines(vec![
        "INFO step: step 110 done".to_owned(),
        "INFO ema: eval at step 100: top-1 40.50%".to_owned(),
    ]);
    app
}

fn draw(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| frame.render_widget(app, frame.area()))
        .unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn press(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// Finds the first drawn line containing `needle`.
fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line contains {needle:?}:\n{}", lines.join("\n")))
}

#[test]
fn stage_rows_at_80x24() {
    let lines = draw(&app_with(four_stages()), 80, 24);
    let expected = [
        "┌ stages ──────────────────────────────────────────────────────────────────────┐",
        "│  stage            state        pid rep items/s   img/s busy% in-w% out-w% rst│",
        "│  loader           running     4101 1/1    10.0    5120  25.0   0.0   70.0   0│",
        "│  augment          running   4102+1 2/2    10.0    5120  60.0   5.0   35.0   1│",
        "│▶ step             running     4103 1/1    10.0    5120  95.0   2.0    0.0   0│",
        "│  ema              running     4104 1/1     1.0     0.0  10.0  90.0    0.0   0│",
        "└──────────────────────────────────────────────────────────────────────────────┘",
    ];
    assert_eq!(lines[2..9], expected);
}

#[test]
fn header_at_80x24() {
    let lines = draw(&app_with(four_stages()), 80, 24);
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run cifar10-cpu  ? help  q quit  graph graphs/cifar10-cpu.ron"
    );
    assert_eq!(
        lines[1].trim_end(),
        " step 120/10000 (1.2%)  ETA 0:16:28  5120 img/s  lr 0.02990  elapsed 0:01:02"
    );
}

#[test]
fn ring_rows_and_bottleneck_at_80x24() {
    let lines = draw(&app_with(four_stages()), 80, 24);
    let expected = [
        "┌ rings ───────────────────────────────────────────────────────────────────────┐",
        "│ring                           from → to        occupancy     fill   bp% wait%│",
        "│raw.0                          loader → augment █████████░     7/8  35.0   5.0│",
        "│raw.1                          loader → augment ██████████     8/8  35.0   5.0│",
        "│views.0                        augment → step   ██████████     4/4  35.0   1.0│",
        "│views.1                        augment → step   ████████░░     3/4  35.0   1.0│",
        "│snap                           step → ema       ░░░░░░░░░░     0/2   0.0  90.0│",
        "└ ▶ bottleneck: step (busy 95%, inputs 92% full, outputs 0% full) ─────────────┘",
    ];
    assert_eq!(lines[9..17], expected);
}

#[test]
fn charts_and_log_share_bottom_at_80x24() {
    let lines = draw(&app_with(four_stages()), 80, 24);
    assert!(
        lines[17].starts_with("┌ ◀ losses (1/4) ▶ ─"),
        "{}",
        lines[17]
    );
    assert!(lines[17].contains("┐┌ log ─"), "{}", lines[17]);
    assert!(
        lines[18].ends_with("│INFO step: step 110 done          │"),
        "{}",
        lines[18]
    );
    assert!(lines[23].starts_with('└'), "{}", lines[23]);
    assert!(lines[23].ends_with('┘'), "{}", lines[23]);
}

#[test]
fn no_bottleneck_marker_when_idle() {
    let mut samples = four_stages();
    for stage in samples.iter_mut().flat_map(|s| s.stages.iter_mut()) {
        stage.busy_ns = 0;
    }
    let lines = draw(&app_with(samples), 80, 24);
    // Stage and ring tables; the chart title below uses the same arrow.
    assert!(
        lines[2..17]
            .iter()
            .all(|l| !l.contains(tables::BOTTLENECK_MARKER))
    );
    assert!(line_with(&lines, "bottleneck: none").starts_with("└ bottleneck: none ─"));
    assert_eq!(
        line_with(&lines, "│  step "),
        "│  step             running     4103 1/1    10.0    5120   0.0   2.0    0.0   0│"
    );
}

#[test]
fn stalled_stage_row() {
    let mut samples = four_stages();
    let last = samples.last_mut().unwrap();
    let now = last.time_ns;
    let ema = last.stages.iter_mut().find(|s| s.name == "ema").unwrap();
    ema.heartbeat_ns = now - DEFAULT_STALL_AFTER_NS - 1_000_000_000;

    let lines = draw(&app_with(samples), 80, 24);
    assert_eq!(
        line_with(&lines, "│  ema "),
        "│  ema              stalled     4104 1/1     1.0     0.0  10.0  90.0    0.0   0│"
    );
}

#[test]
fn narrow_terminal_drops_columns_and_charts() {
    let lines = draw(&app_with(four_stages()), 60, 20);
    let expected_stages = [
        "│  stage                state    items/s busy% in-w% out-w%│",
        "│  loader               running     10.0  25.0   0.0   70.0│",
        "│  augment              running     10.0  60.0   5.0   35.0│",
        "│▶ step                 running     10.0  95.0   2.0    0.0│",
        "│  ema                  running      1.0  10.0  90.0    0.0│",
    ];
    assert_eq!(lines[3..8], expected_stages);
    assert_eq!(
        lines[11],
        "│raw.0                             █████████░     7/8  35.0│"
    );
    assert_eq!(
        lines[16],
        "└ ▶ bottleneck: step ──────────────────────────────────────┘"
    );
    // Header fields that do not fit are left out whole.
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run cifar10-cpu  ? help  q quit"
    );
    assert_eq!(
        lines[1].trim_end(),
        " step 120/10000 (1.2%)  ETA 0:16:28  5120 img/s  lr 0.02990"
    );
    assert!(lines.iter().all(|l| !l.contains("losses")));
    assert_eq!(
        lines[17],
        "┌ log ─────────────────────────────────────────────────────┐"
    );
    assert!(lines[18].starts_with("│INFO ema: eval at step 100: top-1 40.50% "));
}

#[test]
fn very_narrow_terminal_keeps_state_and_busy() {
    let lines = draw(&app_with(four_stages()), 42, 16);
    assert_eq!(lines[3], "│  stage                   state    busy%│");
    assert_eq!(lines[6], "│▶ step                    running   95.0│");
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run cifar10-cpu  ? help  q quit"
    );
    assert_eq!(lines[1].trim_end(), " step 120/10000 (1.2%)  ETA 0:16:28");
}

#[test]
fn too_small_terminal_shows_message() {
    let lines = draw(&app_with(four_stages()), 30, 8);
    let text = lines.join(" ");
    assert!(lines[0].starts_with("terminal too small: 30x8;"), "{text}");
    assert!(text.contains("40x10"), "{text}");
}

#[test]
fn confirm_dialog_over_panels() {
    let mut app = app_with(four_stages());
    press(&mut app, KeyCode::Char('q'));
    let lines = draw(&app, 80, 24);
    assert!(line_with(&lines, "Stop the run?").contains("┌ Stop the run? ─"));
    line_with(&lines, "│ The step stage finishes its current step, │");
    line_with(&lines, "│ y: stop the run    n: keep running        │");
    // The stage table stays visible around the dialog.
    assert!(lines[2].starts_with("┌ stages "));

    press(&mut app, KeyCode::Char('y'));
    let lines = draw(&app, 80, 24);
    assert!(lines.iter().all(|l| !l.contains("Stop the run?")));
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run cifar10-cpu  stopping: waiting for the final checkpoint"
    );
}

#[test]
fn stopping_stage_shows_in_attached_header() {
    let mut samples = four_stages();
    let step = &mut samples.last_mut().unwrap().stages[3];
    step.state = crate::dash::model::StageState::Stopping;
    let mut app = App::new(QuitBehavior::Detach, ViewConfig::default());
    for sample in samples {
        app.push_sample(sample);
    }
    let lines = draw(&app, 80, 24);
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run cifar10-cpu  stopping: waiting for the final checkpoint"
    );
    assert!(line_with(&lines, "│▶ step ").contains(" stopping "));
}

#[test]
fn attached_confirm_dialog_says_leave() {
    let mut app = App::new(QuitBehavior::Detach, ViewConfig::default());
    for sample in four_stages() {
        app.push_sample(sample);
    }
    press(&mut app, KeyCode::Char('q'));
    let lines = draw(&app, 80, 24);
    line_with(&lines, "┌ Leave the dashboard? ─");
    line_with(&lines, "The run goes on without the dashboard.");
}

#[test]
fn attached_help_says_leave() {
    let mut app = App::new(QuitBehavior::Detach, ViewConfig::default());
    for sample in four_stages() {
        app.push_sample(sample);
    }
    press(&mut app, KeyCode::Char('?'));
    let lines = draw(&app, 80, 24);
    line_with(&lines, "│ q / Esc     leave the dashboard (asks first)");
    line_with(&lines, "│ Ctrl-C      leave now; the run goes on");
    assert!(lines.iter().all(|l| !l.contains("stop the run")));
}

#[test]
fn help_overlay_lists_keys_and_columns() {
    let mut app = app_with(four_stages());
    press(&mut app, KeyCode::Char('?'));
    let lines = draw(&app, 80, 24);
    line_with(&lines, "┌ help ─");
    line_with(&lines, "│ q / Esc     quit: stop the run (asks first)");
    line_with(&lines, "│ <- / ->     switch chart ");
    line_with(&lines, "│ in-w%   share of time waiting for input ");
    line_with(
        &lines,
        "Bottleneck: busy >= 50%, inputs >= 50% full, outputs <= 50% full",
    );
    press(&mut app, KeyCode::Esc);
    let lines = draw(&app, 80, 24);
    assert!(lines.iter().all(|l| !l.contains("┌ help ─")));
}

#[test]
fn arrows_switch_chart_title() {
    let mut app = app_with(four_stages());
    press(&mut app, KeyCode::Right);
    let lines = draw(&app, 80, 24);
    assert!(
        lines[17].starts_with("┌ ◀ mask ratio (2/4) ▶ ─"),
        "{}",
        lines[17]
    );
    // The mask ratio went from 50 % to 75 %: the y axis spans exactly that.
    assert!(lines[18].starts_with("│75.00│"), "{}", lines[18]);

    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    let lines = draw(&app, 80, 24);
    assert!(
        lines[17].starts_with("┌ ◀ eval top-1 (4/4) ▶ ─"),
        "{}",
        lines[17]
    );
}

#[test]
fn empty_charts_say_so() {
    let mut samples = four_stages();
    for sample in &mut samples {
        sample.train = None;
        sample.evals.clear();
    }
    let mut app = app_with(samples);
    let lines = draw(&app, 80, 24);
    assert!(
        lines[18].starts_with("│no training step logged yet"),
        "{}",
        lines[18]
    );
    press(&mut app, KeyCode::Left);
    let lines = draw(&app, 80, 24);
    assert!(lines[18].starts_with("│no evaluation yet"), "{}", lines[18]);
}

#[test]
fn diverged_loss_still_draws() {
    let mut samples = four_stages();
    let last = samples.last_mut().unwrap();
    let train = last.train.as_mut().unwrap();
    train.loss = f64::NAN;
    train.loss_u = f64::INFINITY;
    let lines = draw(&app_with(samples), 80, 24);
    assert!(
        lines[17].starts_with("┌ ◀ losses (1/4) ▶ ─"),
        "{}",
        lines[17]
    );
    // The two finite samples still set the axis: 2.750 at the top.
    assert!(lines[18].starts_with("│2.750 │"), "{}", lines[18]);
}

#[test]
fn before_first_sample() {
    let app = App::new(QuitBehavior::StopRun, ViewConfig::default());
    let lines = draw(&app, 80, 24);
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run -  ? help  q quit  graph -"
    );
    assert_eq!(lines[1].trim_end(), " waiting for the first metrics sample");
    assert!(lines[2].starts_with("┌ stages "));
}

#[test]
fn source_error_in_header() {
    let mut app = app_with(four_stages());
    app.set_source_error("metrics unavailable: segment raw.0 missing".to_owned());
    let lines = draw(&app, 100, 24);
    assert_eq!(
        lines[0].trim_end(),
        " ccssl  run cifar10-cpu  metrics unavailable: segment raw.0 missing  graph \
         graphs/cifar10-cpu.ron"
    );
}

#[test]
fn layout_rules() {
    let full = plan_layout(Rect::new(0, 0, 80, 24), 4, 5);
    assert_eq!(full.stages, Rect::new(0, 2, 80, 7));
    assert_eq!(full.edges, Some(Rect::new(0, 9, 80, 8)));
    let (charts, log) = (full.charts.unwrap(), full.log.unwrap());
    assert_eq!((charts.y, charts.height, log.y, log.height), (17, 7, 17, 7));
    assert_eq!(charts.width + log.width, 80);

    // Tall but under 120 columns: charts above the log.
    let tall = plan_layout(Rect::new(0, 0, 80, 50), 4, 5);
    let (charts, log) = (tall.charts.unwrap(), tall.log.unwrap());
    assert_eq!(charts.width, 80);
    assert_eq!(charts.y + charts.height, log.y);
    assert_eq!(log.y + log.height, 50);

    // Narrow and short: the log only.
    let narrow = plan_layout(Rect::new(0, 0, 60, 24), 4, 5);
    assert_eq!(narrow.charts, None);
    assert_eq!(narrow.log, Some(Rect::new(0, 17, 60, 7)));

    // Too short for the ring table: it is dropped, not squeezed.
    let short = plan_layout(Rect::new(0, 0, 80, 14), 4, 5);
    assert_eq!(short.edges, None);
    assert_eq!(short.log, Some(Rect::new(0, 9, 80, 5)));
}
