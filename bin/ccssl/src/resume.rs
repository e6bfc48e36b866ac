//! `ccssl-run --resume RUN_DIR`: checks that a run directory can be continued and finds the
//! step it continues from.
//!
//! A resumed run uses the graph saved in the run directory. A graph file given beside
//! `--resume` must resolve, with its `--set` and `--data` values, to exactly that graph, so a
//! changed setting is rejected rather than mixed into a run that started without it. Every
//! check runs before anything in the run directory is touched.

use std::path::Path;

use ccssl_ema::checkpoint::md5_hex;
use ccssl_ema::open_checkpoint;
use ccssl_pipe::graph::{self, Plan};

use crate::dash::rundir::{RunStatus, run_status};
use crate::kinds::{Stage, load_plan};
use crate::supervisor::{GRAPH_FILE, Resume};

/// Example of a run directory for messages.
const RUN_DIR_EXAMPLE: &str = "runs/cifar10-cpu-20261205-010000";

/// Checks that `run_dir` is a stopped run with an intact last checkpoint written by its own
/// graph, and returns the plan of that graph with the step to continue from. `expected`, when
/// given, is the graph file the user named with its overrides (`--data` included), which must
/// resolve to the saved graph. The error is one message for exit code 2.
pub fn prepare(
    run_dir: &Path,
    expected: Option<(&Path, &[String])>,
) -> Result<(Plan<Stage>, Resume), String> {
    let dir = run_dir.display();
    if !run_dir.is_dir() {
        return Err(format!(
            "--resume {dir}: directory not found; pass the run directory ccssl-run printed when \
             the run started, such as {RUN_DIR_EXAMPLE}"
        ));
    }
    let saved_path = run_dir.join(GRAPH_FILE);
    let saved = std::fs::read_to_string(&saved_path).map_err(|err| {
        format!(
            "--resume {dir}: not a ccssl run directory ({} cannot be read: {err}); pass the run \
             directory ccssl-run printed when the run started, such as {RUN_DIR_EXAMPLE}",
            saved_path.display()
        )
    })?;
    match run_status(run_dir) {
        Ok(RunStatus::Running { supervisor_pid }) => {
            return Err(format!(
                "--resume {dir}: the run is still running (supervisor pid {supervisor_pid}); \
                 stop it first with q in its dashboard or Ctrl-C"
            ));
        }
        Ok(_) => {}
        Err(err) => return Err(format!("--resume {dir}: {err}")),
    }

    let plan = load_plan(&saved_path, &[])?;
    if let Some((file, sets)) = expected {
        let expected = load_plan(file, sets)?;
        if graph::to_ron(&expected.graph) != saved {
            return Err(format!(
                "--resume {dir}: {} (with its --set and --data values) differs from the graph \
                 the run started with, {}; resume without a graph file to continue with the \
                 run's own graph, or start a new run",
                file.display(),
                saved_path.display()
            ));
        }
    }

    let total_steps = plan.stages.iter().find_map(|stage| match &stage.spec {
        Stage::Step(config) => Some(config.total_steps),
        _ => None,
    });
    let Some(total_steps) = total_steps else {
        return Err(format!(
            "--resume {dir}: the run's graph has no Step stage, so there is no training to resume"
        ));
    };
    let last = run_dir.join("checkpoints").join("last");
    if let (Ok(target), false) = (std::fs::read_link(&last), last.exists()) {
        return Err(format!(
            "--resume {dir}: {} points to {}, which is missing; point the link at one of the \
             step-NNNNNNNN directories beside it (ln -sfn step-NNNNNNNN {}) to resume from \
             that checkpoint",
            last.display(),
            target.display(),
            last.display()
        ));
    }
    if !last.exists() {
        return Err(format!(
            "--resume {dir}: no checkpoint to resume from ({} not found): the run stopped \
             before its first checkpoint; start it again",
            last.display()
        ));
    }
    let checkpoint = open_checkpoint(&last)
        .map_err(|err| format!("--resume {dir}: {err}; the run directory is left as it is"))?;
    let saved_hash = md5_hex(saved.as_bytes());
    if checkpoint.state.graph_hash != saved_hash {
        return Err(format!(
            "--resume {dir}: the checkpoint {} was written by another graph (hash {}) than {} \
             (hash {saved_hash}); put the run's graph back or start a new run",
            checkpoint.dir.display(),
            checkpoint.state.graph_hash,
            saved_path.display()
        ));
    }
    let step = checkpoint.state.step;
    if step >= total_steps {
        return Err(format!(
            "--resume {dir}: the run already completed its {total_steps} steps; nothing to resume"
        ));
    }
    Ok((
        plan,
        Resume {
            run_dir: run_dir.to_owned(),
            step,
        },
    ))
}
