//! Stage kinds of ccssl graphs and the entry point of re-executed stage processes.
//!
//! [`Stage`] lists every kind a graph may use: the test kinds and `Exec` of `ccssl-pipe`, and
//! the data stages:
//!
//! ```ron
//! "loader": Loader(dataset: Cifar10(root: "../shared/data/cifar10", download: false),
//!                  num_labeled: 4000, batch_size: 64, mu: 7, total_steps: Some(40)),
//! "augment": Augment(threads: 2, replicas: 2, restart: OnFailure(max: 3), contrast: ()),
//! "sink": ViewSink(expect: Some(40)),
//! ```
//!
//! Slot sizes: a loader writes `RawBatch` slots whose size follows from its own settings
//! (`batch_size`, `mu` and the dataset's image size). An augmenter's `ViewBatch` slots
//! depend on the batches it receives, so validation sizes them from the `Loader` stage that
//! feeds it, through [`StageSpec::output_slot_bytes_after`]. An augmenter fed by any other
//! kind is rejected. An edge may still set a larger `slot_bytes`.
//!
//! Adding a kind means adding a variant here, its arms in the `StageSpec` impl and in
//! [`run_stage`].

use std::process::ExitCode;

use ccssl_augment::stage::{AugmentStageConfig, MAX_THREADS};
use ccssl_loader::LoaderConfig;
use ccssl_pipe::graph::{
    ExecConfig, PipeStage, Ports, RelayConfig, Restart, SinkConfig, SourceConfig, SpecProblem,
    StageSpec,
};
use ccssl_pipe::stage::{self, StageError};
use ccssl_pipe::testing;
use serde::{Deserialize, Serialize};

use ccssl_ema::stage::{EmaStageConfig, RunInfo};
use ccssl_step::stage::StepStageConfig;

use crate::stages::view_sink::{self, ViewSinkConfig};

/// The stage kinds `ccssl-run` accepts.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub enum Stage {
    /// Test source of checksummed payloads.
    Source(SourceConfig),
    /// Test relay that checks and forwards payloads.
    Relay(RelayConfig),
    /// Test sink that checks payloads and writes a summary.
    Sink(SinkConfig),
    /// An outside program.
    Exec(ExecConfig),
    /// Dataset reader that emits `RawBatch` slots.
    Loader(LoaderConfig),
    /// Augmenter that turns `RawBatch` slots into `ViewBatch` slots.
    Augment(AugmentStageConfig),
    /// Counting sink of `ViewBatch` slots.
    ViewSink(ViewSinkConfig),
    /// Training step that turns `ViewBatch` slots into `Snapshot` slots.
    Step(StepStageConfig),
    /// EMA, evaluation and checkpoints from `Snapshot` slots.
    Ema(EmaStageConfig),
}

/// Any number of edges.
const ANY: usize = usize::MAX;

impl Stage {
    /// The same stage as a `ccssl-pipe` kind, for the kinds defined there.
    fn pipe(&self) -> Option<PipeStage> {
        Some(match self {
            Stage::Source(c) => PipeStage::Source(c.clone()),
            Stage::Relay(c) => PipeStage::Relay(c.clone()),
            Stage::Sink(c) => PipeStage::Sink(c.clone()),
            Stage::Exec(c) => PipeStage::Exec(c.clone()),
            Stage::Loader(_)
            | Stage::Augment(_)
            | Stage::ViewSink(_)
            | Stage::Step(_)
            | Stage::Ema(_) => return None,
        })
    }
}

fn problem(field: &str, message: String) -> Result<(), SpecProblem> {
    Err(SpecProblem {
        field: field.to_string(),
        message,
    })
}

fn check_loader(config: &LoaderConfig) -> Result<(), SpecProblem> {
    if let Err(err) = config.validate() {
        let field = match &err {
            ccssl_loader::LoaderError::Config { field, .. } => field,
            _ => "",
        };
        return problem(field, err.to_string());
    }
    if config.total_steps == Some(0) {
        return problem(
            "total_steps",
            "invalid total_steps Some(0); expected None or at least Some(1)".to_string(),
        );
    }
    if ccssl_loader::stage::raw_slot_bytes(config) > ccssl_pipe::graph::MAX_SLOT_BYTES {
        return problem(
            "batch_size",
            format!(
                "batches of {} + {} images of {:?} do not fit in one slot of at most {} bytes; \
                 expected a smaller batch_size or mu",
                config.batch_size,
                config.batch_size.saturating_mul(config.mu),
                config.image_size(),
                ccssl_pipe::graph::MAX_SLOT_BYTES
            ),
        );
    }
    ccssl_loader::stage::check_root(config).or_else(|message| problem("dataset.root", message))?;
    ccssl_loader::stage::check_dataset(config).or_else(|(field, message)| problem(field, message))
}

fn check_augment(config: &AugmentStageConfig) -> Result<(), SpecProblem> {
    if config.threads == 0 || config.threads > MAX_THREADS {
        return problem(
            "threads",
            format!(
                "invalid threads {}; expected 1 to {MAX_THREADS}",
                config.threads
            ),
        );
    }
    // The image size is checked against the loader in `output_slot_bytes_after`.
    config.augment().validate(0, 0).or_else(augment_problem)
}

fn augment_problem(err: ccssl_augment::AugmentError) -> Result<(), SpecProblem> {
    let field = match &err {
        ccssl_augment::AugmentError::Config { field, .. } => field,
        _ => "",
    };
    problem(field, err.to_string())
}

fn check_step(config: &StepStageConfig) -> Result<(), SpecProblem> {
    config
        .check()
        .or_else(|(field, message)| problem(field, message))?;
    if let Err(err) = ccssl_step::Step::new(config.step_config(), 0) {
        return problem("", err.to_string());
    }
    Ok(())
}

/// Builds the training step: restored from the run's `last` checkpoint when the run resumes,
/// else fresh from the run seed.
fn start_step(
    ctx: &ccssl_pipe::stage::StageContext,
    config: &StepStageConfig,
) -> Result<ccssl_step::Step, StageError> {
    let last = ctx.run_dir().join("checkpoints").join("last");
    if last.exists() {
        let loaded =
            ccssl_ema::open_checkpoint(&last).map_err(|err| StageError::Failed(err.to_string()))?;
        return loaded
            .restore_step(Some(config.threads))
            .map_err(|err| StageError::Failed(err.to_string()));
    }
    ccssl_step::Step::new(config.step_config(), ctx.seed())
        .map_err(|err| StageError::Failed(err.to_string()))
}

/// Reads what the EMA stage needs from the run's resolved `graph.ron`: the step settings,
/// the loader's dataset and the graph's hash.
fn run_info(ctx: &ccssl_pipe::stage::StageContext) -> Result<RunInfo, StageError> {
    let path = ctx.run_dir().join("graph.ron");
    let text = std::fs::read_to_string(&path)
        .map_err(|err| StageError::Failed(format!("failed to read {}: {err}", path.display())))?;
    let raw = ccssl_pipe::graph::ron_options()
        .from_str::<ccssl_pipe::graph::RawGraph<Stage>>(&text)
        .map_err(|err| StageError::Failed(format!("invalid {}: {err}", path.display())))?;
    let mut step = None;
    let mut dataset = None;
    for (_, stage) in &raw.stages.0 {
        match stage {
            Stage::Step(c) => step = Some(c.step_config()),
            Stage::Loader(c) => dataset = Some(c.dataset.clone()),
            _ => {}
        }
    }
    let (Some(step_config), Some(dataset)) = (step, dataset) else {
        return Err(StageError::Failed(format!(
            "{} needs one Step and one Loader stage for the Ema stage",
            path.display()
        )));
    };
    Ok(RunInfo {
        step_config,
        dataset,
        graph_hash: ccssl_ema::checkpoint::md5_hex(text.as_bytes()),
    })
}

impl StageSpec for Stage {
    fn kind(&self) -> &'static str {
        match self {
            Stage::Loader(_) => "Loader",
            Stage::Augment(_) => "Augment",
            Stage::ViewSink(_) => "ViewSink",
            Stage::Step(_) => "Step",
            Stage::Ema(_) => "Ema",
            other => other.pipe().map_or("", |p| p.kind()),
        }
    }

    fn replicas(&self) -> u32 {
        match self {
            Stage::Loader(_) => 1,
            Stage::Augment(c) => c.replicas,
            Stage::ViewSink(c) => c.replicas,
            Stage::Step(_) | Stage::Ema(_) => 1,
            other => other.pipe().map_or(1, |p| p.replicas()),
        }
    }

    fn restart(&self) -> Restart {
        match self {
            Stage::Loader(c) => c.restart,
            Stage::Augment(c) => c.restart,
            Stage::ViewSink(c) => c.restart,
            // Both own state that a respawn would lose: the model and optimizer, the EMA.
            Stage::Step(_) | Stage::Ema(_) => Restart::Never,
            other => other.pipe().map_or(Restart::Never, |p| p.restart()),
        }
    }

    fn stateful(&self) -> bool {
        match self {
            Stage::Loader(_) | Stage::Augment(_) => false,
            Stage::ViewSink(_) | Stage::Step(_) | Stage::Ema(_) => true,
            other => other.pipe().is_some_and(|p| p.stateful()),
        }
    }

    fn ports(&self) -> Ports {
        match self {
            Stage::Loader(_) => Ports {
                inputs: (0, 0),
                outputs: (1, 1),
            },
            Stage::Augment(_) => Ports {
                inputs: (1, 1),
                outputs: (1, 1),
            },
            Stage::ViewSink(_) | Stage::Ema(_) => Ports {
                inputs: (1, 1),
                outputs: (0, 0),
            },
            Stage::Step(_) => Ports {
                inputs: (1, 1),
                outputs: (1, 1),
            },
            other => other.pipe().map_or(
                Ports {
                    inputs: (0, ANY),
                    outputs: (0, ANY),
                },
                |p| p.ports(),
            ),
        }
    }

    fn output_slot_bytes(&self) -> Option<u64> {
        match self {
            Stage::Loader(c) => Some(ccssl_loader::stage::raw_slot_bytes(c)),
            Stage::Step(c) => ccssl_step::stage::snapshot_slot_bytes(c),
            Stage::Augment(_) | Stage::ViewSink(_) | Stage::Ema(_) => None,
            other => other.pipe().and_then(|p| p.output_slot_bytes()),
        }
    }

    fn output_slot_bytes_after(&self, upstream: &[&Self]) -> Result<Option<u64>, SpecProblem> {
        let Stage::Augment(config) = self else {
            return Ok(self.output_slot_bytes());
        };
        match upstream {
            [Stage::Loader(loader)] => {
                let (height, width) = loader.image_size();
                config
                    .augment()
                    .validate(width as usize, height as usize)
                    .or_else(augment_problem)?;
                let unlabeled = loader.batch_size.saturating_mul(loader.mu);
                Ok(Some(config.view_slot_bytes(
                    height,
                    width,
                    loader.batch_size,
                    unlabeled,
                )))
            }
            other => Err(SpecProblem {
                field: String::new(),
                message: format!(
                    "input from a {} stage; an Augment stage sizes its output slots from the \
                     batch shape of the Loader stage feeding it, so expected an edge from a \
                     Loader stage",
                    other.first().map_or("missing", |s| s.kind())
                ),
            }),
        }
    }

    fn check(&self) -> Result<(), SpecProblem> {
        match self {
            Stage::Loader(c) => check_loader(c),
            Stage::Augment(c) => check_augment(c),
            Stage::ViewSink(ViewSinkConfig {
                expect: Some(0), ..
            }) => problem(
                "expect",
                "invalid expect Some(0); expected None or at least Some(1)".to_string(),
            ),
            Stage::ViewSink(_) => Ok(()),
            Stage::Step(c) => check_step(c),
            Stage::Ema(c) => c
                .check()
                .or_else(|(field, message)| problem(field, message)),
            other => other.pipe().map_or(Ok(()), |p| p.check()),
        }
    }

    fn exec(&self) -> Option<&ExecConfig> {
        match self {
            Stage::Exec(c) => Some(c),
            _ => None,
        }
    }
}

/// Environment variable that stands in for `--data` when the option is not given.
pub const DATA_ENV: &str = "CCSSL_DATA";

/// Turns `--data DIR` (else `$CCSSL_DATA`) into `--set` overrides of `dataset.root` for every
/// `Loader` stage of the graph in `file`, placed before `sets` so that an explicit `--set`
/// still wins. Without a data root, or when the file does not parse (loading reports that),
/// returns `sets` unchanged.
pub fn with_data_root(
    file: &std::path::Path,
    data: Option<&std::path::Path>,
    sets: &[String],
) -> Vec<String> {
    let env = std::env::var_os(DATA_ENV).map(std::path::PathBuf::from);
    let Some(data) = data.or(env.as_deref()) else {
        return sets.to_vec();
    };
    let Some(raw) = std::fs::read_to_string(file).ok().and_then(|text| {
        ccssl_pipe::graph::ron_options()
            .from_str::<ccssl_pipe::graph::RawGraph<Stage>>(&text)
            .ok()
    }) else {
        return sets.to_vec();
    };
    let root = ron::to_string(&data.display().to_string()).unwrap_or_default();
    let mut all: Vec<String> = raw
        .stages
        .0
        .iter()
        // Synthetic data has no root to replace.
        .filter(|(_, stage)| match stage {
            Stage::Loader(loader) => !matches!(
                loader.dataset,
                ccssl_loader::DatasetConfig::Synthetic { .. }
            ),
            _ => false,
        })
        .map(|(name, _)| format!("stages.{name}.dataset.root={root}"))
        .collect();
    all.extend_from_slice(sets);
    all
}

/// Loads and validates the graph `file` with `overrides`, then checks what single stages
/// cannot check alone: every `Loader` feeding a `Step` emits exactly one batch per step.
/// The error is the one-line message for exit code 2.
pub fn load_plan(
    file: &std::path::Path,
    overrides: &[String],
) -> Result<ccssl_pipe::graph::Plan<Stage>, String> {
    let plan = ccssl_pipe::graph::load::<Stage>(file, overrides).map_err(|err| err.to_string())?;
    let steps = plan.stages.iter().filter_map(|stage| match &stage.spec {
        Stage::Step(config) => Some((stage.name.as_str(), config.total_steps)),
        _ => None,
    });
    for (step, total) in steps {
        for stage in &plan.stages {
            let Stage::Loader(loader) = &stage.spec else {
                continue;
            };
            if loader.total_steps != Some(total) {
                return Err(format!(
                    "{}: stage \"{}\" has total_steps {:?} but stage \"{step}\" has total_steps \
                     {total}; the loader emits one batch per training step, so set \
                     stages.{}.total_steps to Some({total})",
                    file.display(),
                    stage.name,
                    loader.total_steps,
                    stage.name
                ));
            }
        }
    }
    Ok(plan)
}

/// Runs the stage described by the launch environment (the hidden `stage` subcommand).
pub fn run_stage() -> ExitCode {
    stage::main(|ctx| match ctx.spec::<Stage>()? {
        Stage::Source(config) => testing::source(ctx, &config),
        Stage::Relay(config) => testing::relay(ctx, &config),
        Stage::Sink(config) => testing::sink(ctx, &config),
        Stage::Exec(config) => Err(StageError::Failed(format!(
            "an Exec stage runs {:?}, not the stage subcommand",
            config.program
        ))),
        Stage::Loader(config) => ccssl_loader::stage::run(ctx, &config),
        Stage::Augment(config) => ccssl_augment::stage::run(ctx, &config),
        Stage::ViewSink(config) => view_sink::run(ctx, &config),
        Stage::Step(config) => {
            let step = start_step(ctx, &config)?;
            ccssl_step::stage::run(ctx, &config, step)
        }
        Stage::Ema(config) => {
            let info = run_info(ctx)?;
            ccssl_ema::stage::run(ctx, &config, &info)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ccssl_pipe::graph;

    use super::*;

    const GRAPH: &str = r#"Graph(
        name: "kinds",
        stages: {
            "loader": Loader(dataset: Synthetic(classes: 4, train_per_class: 10, height: 16, width: 8),
                             num_labeled: 8, batch_size: 4, mu: 3, total_steps: 5),
            "augment": Augment(replicas: 2, restart: OnFailure(max: 3), contrast: ()),
            "sink": ViewSink(expect: 5),
        },
        edges: [
            Edge(from: "loader", to: "augment", slots: 4),
            Edge(from: "augment", to: "sink", slots: 4),
        ],
    )"#;

    fn load(text: &str, set: &[&str]) -> Result<graph::Plan<Stage>, String> {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        graph::load_str::<Stage>(Path::new("kinds.ron"), text, &set).map_err(|e| e.to_string())
    }

    const TRAINING: &str = r#"Graph(
        name: "training",
        stages: {
            "loader": Loader(dataset: Synthetic(classes: 4, train_per_class: 10),
                             num_labeled: 8, batch_size: 4, mu: 2, total_steps: 6),
            "augment": Augment(contrast: ()),
            "step": Step(model: WideResNet(depth: 10, widen: 1, proj_dim: 8, num_classes: 4),
                         total_steps: 6, threads: 1),
            "ema": Ema(),
        },
        edges: [
            Edge(from: "loader", to: "augment", slots: 4),
            Edge(from: "augment", to: "step", slots: 4),
            Edge(from: "step", to: "ema", slots: 2),
        ],
    )"#;

    fn load_training(set: &[&str]) -> Result<graph::Plan<Stage>, String> {
        let dir = std::env::temp_dir().join(format!("ccssl-kinds-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("training-{n}.ron"));
        std::fs::write(&file, TRAINING).unwrap();
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let plan = load_plan(&file, &set);
        std::fs::remove_file(&file).unwrap();
        plan
    }

    #[test]
    fn data_root_skips_synthetic_loaders() {
        let dir = std::env::temp_dir().join(format!("ccssl-kinds-synth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("training.ron");
        std::fs::write(&file, TRAINING).unwrap();
        let sets = with_data_root(&file, Some(Path::new("/data/cifar10")), &[]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(sets.is_empty(), "{sets:?}");
    }

    #[test]
    fn loader_and_step_with_equal_totals_load() {
        let plan = load_training(&[]).unwrap();
        assert_eq!(plan.stages.len(), 4);
    }

    #[test]
    fn loader_total_differing_from_step_is_rejected() {
        let err = load_training(&["stages.loader.total_steps=Some(5)"]).unwrap_err();
        assert!(
            err.contains("stage \"loader\" has total_steps Some(5)"),
            "{err}"
        );
        assert!(err.contains("stage \"step\" has total_steps 6"), "{err}");
        assert!(
            err.contains("stages.loader.total_steps to Some(6)"),
            "{err}"
        );
    }

    #[test]
    fn endless_loader_before_step_is_rejected() {
        let err = load_training(&["stages.loader.total_steps=None"]).unwrap_err();
        assert!(err.contains("has total_steps None"), "{err}");
    }

    #[test]
    fn design_form_of_the_loader_parses() {
        let text = r#"Graph(name: "g", stages: {
            "loader": Loader(dataset: Cifar10(root: "../shared/data/cifar10"), num_labeled: 4000, batch_size: 64, mu: 7),
        })"#;
        let raw: graph::RawGraph<Stage> = graph::ron_options().from_str(text).unwrap();
        let Stage::Loader(config) = &raw.stages.0[0].1 else {
            panic!("expected a loader, got {:?}", raw.stages.0[0].1);
        };
        assert_eq!(
            (config.num_labeled, config.batch_size, config.mu),
            (4000, 64, 7)
        );
        assert_eq!(config.total_steps, None);
        assert_eq!(config.restart, Restart::Never);
    }

    #[test]
    fn slots_are_sized_from_the_loader() {
        let plan = load(GRAPH, &[]).unwrap();
        let raw = ccssl_pipe::slot::raw_batch_size(16, 8, 4, 12) as u64;
        let views = ccssl_pipe::slot::view_batch_size(16, 8, 4, 12, true) as u64;
        assert_eq!(plan.edges[0].slot_bytes, raw);
        assert_eq!(plan.edges[1].slot_bytes, views);
        // Four views of 16 x 8 RGB per unlabeled image would not fit; three do.
        assert!(views >= (4 + 3 * 12) * 16 * 8 * 3);
        assert!(views < (4 + 4 * 12) * 16 * 8 * 3);

        let plan = load(GRAPH, &["stages.augment.contrast=None"]).unwrap();
        let views = ccssl_pipe::slot::view_batch_size(16, 8, 4, 12, false) as u64;
        assert_eq!(plan.edges[1].slot_bytes, views);
    }

    #[test]
    fn small_slot_bytes_after_augment_is_rejected() {
        let message = load(GRAPH, &["edges.1.slot_bytes=1000"]).unwrap_err();
        assert!(message.contains("edge \"augment -> sink\""), "{message}");
        assert!(message.contains("slot_bytes 1000 is smaller"), "{message}");
    }

    #[test]
    fn augment_needs_a_loader_upstream() {
        let text = r#"Graph(name: "g", stages: {
            "source": Source(count: 3),
            "augment": Augment(),
            "sink": ViewSink(),
        }, edges: [
            Edge(from: "source", to: "augment", slots: 2),
            Edge(from: "augment", to: "sink", slots: 2),
        ])"#;
        let message = load(text, &[]).unwrap_err();
        assert!(message.contains("stage \"augment\""), "{message}");
        assert!(message.contains("input from a Source stage"), "{message}");
    }

    #[test]
    fn bad_settings_are_rejected_with_field() {
        let message = load(GRAPH, &["stages.augment.weak=(pad: 8)"]).unwrap_err();
        assert!(message.contains("weak.pad"), "{message}");
        let message = load(GRAPH, &["stages.augment.threads=0"]).unwrap_err();
        assert!(message.contains("invalid threads 0"), "{message}");
        let message = load(GRAPH, &["stages.loader.mu=0"]).unwrap_err();
        assert!(message.contains("mu = 0"), "{message}");
        let message = load(GRAPH, &["stages.sink.replicas=2"]).unwrap_err();
        assert!(message.contains("stateful ViewSink"), "{message}");
        let message = load(GRAPH, &["stages.loader.replicas=2"]).unwrap_err();
        assert!(message.contains("replicas"), "{message}");
    }

    #[test]
    fn missing_dataset_root_is_a_graph_error() {
        let text = GRAPH.replace(
            "Synthetic(classes: 4, train_per_class: 10, height: 16, width: 8)",
            r#"Cifar10(root: "/no/such/cifar", download: false)"#,
        );
        let message = load(&text, &[]).unwrap_err();
        assert!(message.contains("stage \"loader\""), "{message}");
        assert!(message.contains("/no/such/cifar"), "{message}");
        assert!(message.contains("--data"), "{message}");
    }

    #[test]
    fn data_root_overrides_every_loader() {
        let dir = std::env::temp_dir().join(format!("ccssl-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("g.ron");
        let cifar = GRAPH.replace(
            "Synthetic(classes: 4, train_per_class: 10, height: 16, width: 8)",
            "Cifar10(root: \"data/cifar10\")",
        );
        std::fs::write(&file, cifar).unwrap();
        let sets = with_data_root(&file, Some(Path::new("/data/c\"10")), &["a=1".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            sets,
            [
                r#"stages.loader.dataset.root="/data/c\"10""#.to_string(),
                "a=1".to_string()
            ]
        );
    }

    #[test]
    fn pipe_kinds_keep_their_rules() {
        let text = r#"Graph(name: "g", stages: {
            "source": Source(count: 3, payload_bytes: 100),
            "relay": Relay(replicas: 2),
            "sink": Sink(expect: 3),
        }, edges: [
            Edge(from: "source", to: "relay", slots: 2),
            Edge(from: "relay", to: "sink", slots: 2),
        ])"#;
        let plan = load(text, &[]).unwrap();
        assert_eq!(plan.stages[1].replicas, 2);
        let size = ccssl_pipe::slot::test_slot_size(100) as u64;
        assert_eq!(plan.edges[1].slot_bytes, size);
        let message = load(text, &["stages.source.replicas=2"]).unwrap_err();
        assert!(message.contains("stateful Source"), "{message}");
    }
}
