//! Expected numbers come from the counter differences written into
//! `testdata/four-stages.jsonl`: three samples one second apart, so every rate divides a
//! two-second difference.

use super::*;
use crate::dash::testdata::four_stages;

const S: u64 = 1_000_000_000;

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() < 1e-9)
}

fn view_of(samples: Vec<Sample>) -> DerivedView {
    let mut window = Window::new(ViewConfig::default());
    for sample in samples {
        window.push(sample);
    }
    window.view().expect("window has samples")
}

fn stage<'a>(view: &'a DerivedView, name: &str) -> &'a StageView {
    view.stages.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn stage_rates_from_counter_deltas() {
    let view = view_of(four_stages());
    assert_eq!(view.window_ns, 2 * S);
    let names: Vec<&str> = view.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["loader", "augment", "step", "ema"]);

    let loader = stage(&view, "loader");
    assert!(close(loader.items_per_s, 10.0), "{loader:?}");
    assert!(close(loader.images_per_s, 5120.0), "{loader:?}");
    assert!(close(loader.busy, 0.25), "{loader:?}");
    assert!(close(loader.blocked_out, 0.7), "{loader:?}");
    assert!(close(loader.blocked_in, 0.0), "{loader:?}");

    let ema = stage(&view, "ema");
    assert!(close(ema.items_per_s, 1.0), "{ema:?}");
    assert!(close(ema.blocked_in, 0.9), "{ema:?}");
}

#[test]
fn replicas_sum_rates_and_average_shares() {
    let view = view_of(four_stages());
    let augment = stage(&view, "augment");
    assert_eq!(augment.replicas, 2);
    assert_eq!(augment.replicas_alive, 2);
    assert_eq!(augment.pids, [4102, 4107]);
    assert_eq!(augment.restarts, 1);
    assert!(close(augment.items_per_s, 10.0), "{augment:?}");
    assert!(close(augment.busy, 0.6), "{augment:?}");
    assert!(close(augment.blocked_in, 0.05), "{augment:?}");
    assert!(close(augment.blocked_out, 0.35), "{augment:?}");
}

#[test]
fn header_numbers_and_eta() {
    let view = view_of(four_stages());
    assert_eq!(view.step, 120);
    assert_eq!(view.total_steps, 10000);
    assert_eq!(view.elapsed_ns, 62 * S);
    assert!(close(view.steps_per_s, 10.0));
    // 9880 remaining steps at 10 steps/s.
    assert_eq!(view.eta_ns, Some(988 * S));
    assert!(close(view.images_per_s, 5120.0));
    assert_eq!(view.last_eval.map(|e| e.step), Some(100));
    assert_eq!(view.train.map(|t| t.loss), Some(2.0));
}

#[test]
fn edge_occupancy_and_backpressure() {
    let view = view_of(four_stages());
    let raw0 = &view.edges[0];
    assert_eq!(raw0.name, "raw.0");
    assert_eq!(raw0.filled, 7);
    assert!((raw0.occupancy - 0.875).abs() < 1e-9);
    // Fill levels 6, 8, 7 of 8 slots.
    assert!((raw0.mean_occupancy - 21.0 / 24.0).abs() < 1e-9);
    assert!(close(raw0.backpressure, 0.35));
    assert!(close(raw0.starvation, 0.05));
    assert!(close(raw0.pushes_per_s, 5.0));

    let snap = &view.edges[4];
    assert_eq!(snap.filled, 0);
    assert!(close(snap.backpressure, 0.0));
    assert!(close(snap.starvation, 0.9));
}

#[test]
fn bottleneck_is_busy_stage_with_full_input() {
    let view = view_of(four_stages());
    let bottleneck = view.bottleneck.expect("step qualifies");
    assert_eq!(bottleneck.stage, "step");
    assert!((bottleneck.busy - 0.95).abs() < 1e-9);
    assert_eq!(bottleneck.output_full, Some(0.0));
    // views.0 is full in every sample, views.1 contains 3, 4, 3 of 4 slots.
    let input = bottleneck.input_full.unwrap();
    assert!((input - (1.0 + 10.0 / 12.0) / 2.0).abs() < 1e-9);
}

#[test]
fn bottleneck_moves_upstream_when_step_starves() {
    let mut samples = four_stages();
    for sample in &mut samples {
        for edge in sample.edges.iter_mut().filter(|e| e.to == "step") {
            edge.tail = edge.head;
        }
    }
    let view = view_of(samples);
    // The step stage is still busy but nothing waits in front of it. The augment stage is 60 %
    // busy with full inputs and now empty outputs, so it is the one holding the step back.
    assert_eq!(view.bottleneck.map(|b| b.stage).as_deref(), Some("augment"));
}

#[test]
fn no_bottleneck_when_every_stage_idles() {
    let mut samples = four_stages();
    for sample in &mut samples {
        for stage in &mut sample.stages {
            stage.busy_ns = 0;
        }
    }
    assert_eq!(view_of(samples).bottleneck, None);
}

#[test]
fn stale_heartbeat_shows_stalled() {
    let mut samples = four_stages();
    let last = samples.last_mut().unwrap();
    let now = last.time_ns;
    let ema = last.stages.iter_mut().find(|s| s.name == "ema").unwrap();
    ema.heartbeat_ns = now - DEFAULT_STALL_AFTER_NS - 1;
    let augment1 = last.stages.iter_mut().find(|s| s.replica == 1).unwrap();
    augment1.heartbeat_ns = now - DEFAULT_STALL_AFTER_NS;

    let view = view_of(samples);
    assert_eq!(stage(&view, "ema").state, DisplayState::Stalled);
    // Exactly at the threshold still counts as beating.
    assert_eq!(stage(&view, "augment").state, DisplayState::Running);
}

#[test]
fn failed_replica_wins_over_running() {
    let mut samples = four_stages();
    let last = samples.last_mut().unwrap();
    let augment1 = last.stages.iter_mut().find(|s| s.replica == 1).unwrap();
    augment1.state = StageState::Failed;
    augment1.pid = None;

    let view = view_of(samples);
    let augment = stage(&view, "augment");
    assert_eq!(augment.state, DisplayState::Failed);
    assert_eq!(augment.replicas_alive, 1);
    assert_eq!(augment.pids, [4102]);
}

#[test]
fn single_sample_has_no_rates() {
    let view = view_of(four_stages().into_iter().take(1).collect());
    assert_eq!(view.window_ns, 0);
    assert_eq!(stage(&view, "loader").items_per_s, None);
    assert_eq!(stage(&view, "loader").busy, None);
    assert_eq!(view.edges[0].backpressure, None);
    assert_eq!(view.eta_ns, None);
    assert_eq!(view.bottleneck, None);
}

#[test]
fn counter_reset_counts_from_zero() {
    let mut samples = four_stages();
    let last = samples.last_mut().unwrap();
    let loader = &mut last.stages[0];
    // The loader restarted and has committed 4 batches since.
    loader.items_out = 4;
    loader.images_out = 2048;
    let view = view_of(samples);
    assert!(close(stage(&view, "loader").items_per_s, 2.0));
}

#[test]
fn window_drops_old_samples_keeping_baseline() {
    let config = ViewConfig {
        window_ns: S,
        stall_after_ns: DEFAULT_STALL_AFTER_NS,
    };
    let mut window = Window::new(config);
    for sample in four_stages() {
        window.push(sample);
    }
    let view = window.view().unwrap();
    // With a one-second window only the last two samples remain.
    assert_eq!(view.window_ns, S);
    assert!(close(view.steps_per_s, 10.0));
}

#[test]
fn repeated_timestamp_is_ignored() {
    let samples = four_stages();
    let mut window = Window::new(ViewConfig::default());
    window.push(samples[0].clone());
    window.push(samples[1].clone());
    window.push(samples[1].clone());
    window.push(samples[0].clone());
    assert_eq!(window.view().unwrap().window_ns, S);
}
