//! The progress line printed instead of the dashboard when stdout is not a terminal or
//! `--headless` is given.

use super::format;
use super::view::DerivedView;

/// Formats one progress line (no newline) from the derived view:
///
/// ```text
/// step 120/10000 (1.2%) | 5120 img/s | ETA 0:16:28 | loss 2.000 Lx 0.2500 Lu 0.5000 Lc 1.250 mask 75.0% | eval@100 top-1 EMA 40.50% raw 38.25%
/// ```
///
/// Fields not known yet print as `-`.
pub fn format_progress_line(view: &DerivedView) -> String {
    let done = view.step as f64 * 100.0 / view.total_steps.max(1) as f64;
    let eta = view.eta_ns.map_or_else(|| "-".to_owned(), format::duration);
    let losses = view.train.map_or_else(
        || "loss -".to_owned(),
        |t| {
            format!(
                "loss {} Lx {} Lu {} Lc {} mask {:.1}%",
                format::value(t.loss),
                format::value(t.loss_x),
                format::value(t.loss_u),
                format::value(t.loss_c),
                t.mask_ratio * 100.0
            )
        },
    );
    let eval = view.last_eval.map_or_else(
        || "eval -".to_owned(),
        |e| {
            format!(
                "eval@{} top-1 EMA {:.2}% raw {:.2}%",
                e.step, e.top1_ema, e.top1_raw
            )
        },
    );
    format!(
        "step {}/{} ({done:.1}%) | {} img/s | ETA {eta} | {losses} | {eval}",
        view.step,
        view.total_steps,
        format::rate(view.images_per_s),
    )
}

/// Formats each stage's items per second, with replicas up out of replicas where a stage has
/// several: `source 812/s | relay 810/s (2/2 up) | sink 810/s`.
pub fn format_stage_rates(view: &DerivedView) -> String {
    let parts: Vec<String> = view
        .stages
        .iter()
        .map(|stage| {
            let replicas = if stage.replicas > 1 {
                format!(" ({}/{} up)", stage.replicas_alive, stage.replicas)
            } else {
                String::new()
            };
            format!(
                "{} {}/s{replicas}",
                stage.name,
                format::rate(stage.items_per_s)
            )
        })
        .collect();
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::testdata::four_stages;
    use crate::dash::view::{ViewConfig, Window};

    #[test]
    fn line_from_recorded_samples() {
        let mut window = Window::new(ViewConfig::default());
        for sample in four_stages() {
            window.push(sample);
        }
        let line = format_progress_line(&window.view().unwrap());
        assert_eq!(
            line,
            "step 120/10000 (1.2%) | 5120 img/s | ETA 0:16:28 | loss 2.000 Lx 0.2500 Lu 0.5000 \
             Lc 1.250 mask 75.0% | eval@100 top-1 EMA 40.50% raw 38.25%"
        );
    }

    #[test]
    fn stage_rates_from_recorded_samples() {
        let mut window = Window::new(ViewConfig::default());
        for sample in four_stages() {
            window.push(sample);
        }
        let line = format_stage_rates(&window.view().unwrap());
        assert_eq!(
            line,
            "loader 10.0/s | augment 10.0/s (2/2 up) | step 10.0/s | ema 1.0/s"
        );
    }

    #[test]
    fn first_sample_prints_dashes() {
        let mut sample = four_stages().remove(0);
        sample.train = None;
        let mut window = Window::new(ViewConfig::default());
        window.push(sample);
        let line = format_progress_line(&window.view().unwrap());
        assert_eq!(
            line,
            "step 100/10000 (1.0%) | - img/s | ETA - | loss - | eval -"
        );
    }
}
