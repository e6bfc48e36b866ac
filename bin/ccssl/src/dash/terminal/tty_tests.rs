//! The dashboard in a real terminal: the test binary re-executes itself inside a private tmux
//! server and checks, after the dashboard returns or panics, that the terminal left raw mode and
//! the alternate screen. Skipped with a message where tmux is not installed.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::dash::model::Sample;
use crate::dash::testdata::four_stages;

/// Selects what the re-executed child does.
const CHILD_ENV: &str = "CCSSL_DASH_TTY_CHILD";
/// File the child writes its result to.
const CHILD_OUT_ENV: &str = "CCSSL_DASH_TTY_OUT";
/// Bound on every wait for the child; far above the second or two the steps take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Replays the fixture, then repeats its last sample (which the window ignores) until `stop`
/// ran, then ends the run.
struct UntilStopped {
    samples: std::vec::IntoIter<Sample>,
    last: Option<Sample>,
    stopped: Rc<Cell<bool>>,
}

impl MetricsSource for UntilStopped {
    fn sample(&mut self) -> Result<Sample, SourceError> {
        if self.stopped.get() {
            return Err(SourceError::Ended);
        }
        if let Some(sample) = self.samples.next() {
            self.last = Some(sample);
        }
        Ok(self.last.clone().expect("fixture has samples"))
    }
}

/// Gives one sample, then panics.
struct PanicsOnSecond {
    calls: u32,
}

impl MetricsSource for PanicsOnSecond {
    fn sample(&mut self) -> Result<Sample, SourceError> {
        self.calls += 1;
        assert!(
            self.calls < 2,
            "injected panic for the terminal restore test"
        );
        Ok(four_stages().remove(0))
    }
}

/// Entry of the re-executed child; does nothing in a normal test run.
#[test]
fn tty_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let out = PathBuf::from(std::env::var(CHILD_OUT_ENV).unwrap());
    let log = PathBuf::from("/nonexistent/ccssl/run.log");
    match mode.as_str() {
        "quit" => {
            let stopped = Rc::new(Cell::new(false));
            let mut source = UntilStopped {
                samples: four_stages().into_iter(),
                last: None,
                stopped: Rc::clone(&stopped),
            };
            let exit = run_dashboard(&mut source, &log, || stopped.set(true)).unwrap();
            std::fs::write(out, format!("{exit:?}\n")).unwrap();
        }
        "panic" => {
            let _ = run_dashboard(&mut PanicsOnSecond { calls: 0 }, &log, || {});
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// A tmux server of its own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn pane_text(&self) -> String {
        String::from_utf8_lossy(&self.command(&["capture-pane", "-p", "-t", "t"]).stdout)
            .into_owned()
    }

    fn alternate_on(&self) -> String {
        let out = self.command(&["display-message", "-p", "-t", "t", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn send(&self, key: &str) {
        self.command(&["send-keys", "-t", "t", key]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.command(&["kill-server"]);
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the child in `mode` in an 80x24 tmux pane. After the child exits, the pane's shell
/// writes `stty -a` to `<dir>/stty` and stays open so the pane can be inspected.
fn start_child(mode: &str) -> Option<(Tmux, PathBuf)> {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed; skipping the real-terminal dashboard test");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("ccssl-dash-tty-{}-{mode}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "{CHILD_ENV}={mode} {CHILD_OUT_ENV}={out} {exe} --exact \
         dash::terminal::tty_tests::tty_child --nocapture --test-threads=1 2>{err}; \
         stty -a > {stty}.tmp; mv {stty}.tmp {stty}; exec sleep 60",
        out = dir.join("result").display(),
        exe = exe.display(),
        err = dir.join("stderr").display(),
        stty = dir.join("stty").display(),
    );
    let tmux = Tmux {
        socket: format!("ccssl-dash-test-{}-{mode}", std::process::id()),
    };
    let started = tmux.command(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "80",
        "-y",
        "24",
        "sh",
        "-c",
        &script,
    ]);
    assert!(started.status.success(), "tmux failed: {started:?}");
    Some((tmux, dir))
}

/// True when `stty -a` output shows a cooked terminal: canonical input and echo on.
fn cooked(stty: &str) -> bool {
    let flags: Vec<&str> = stty.split_whitespace().collect();
    flags.contains(&"icanon") && flags.contains(&"echo")
}

#[test]
fn quit_in_real_terminal_restores_it() {
    let Some((tmux, dir)) = start_child("quit") else {
        return;
    };
    wait_until("the stage table", || tmux.pane_text().contains("│▶ step "));
    let screen = tmux.pane_text();
    assert!(screen.contains("│  loader "), "{screen}");
    assert!(screen.contains("  95.0 "), "{screen}");
    assert_eq!(tmux.alternate_on(), "1");

    tmux.send("q");
    wait_until("the confirm dialog", || {
        tmux.pane_text().contains("Stop the run?")
    });
    tmux.send("y");
    let stty_path = dir.join("stty");
    wait_until("the child to exit", || stty_path.exists());

    let result = std::fs::read_to_string(dir.join("result")).unwrap();
    assert_eq!(result, "RunEnded\n");
    let stty = std::fs::read_to_string(&stty_path).unwrap();
    assert!(cooked(&stty), "terminal left in raw mode: {stty}");
    assert_eq!(tmux.alternate_on(), "0");
}

#[test]
fn panic_in_real_terminal_restores_it() {
    let Some((tmux, dir)) = start_child("panic") else {
        return;
    };
    let stty_path = dir.join("stty");
    wait_until("the child to exit", || stty_path.exists());

    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(
        stderr.contains("injected panic for the terminal restore test"),
        "{stderr}"
    );
    let stty = std::fs::read_to_string(&stty_path).unwrap();
    assert!(cooked(&stty), "terminal left in raw mode: {stty}");
    assert_eq!(tmux.alternate_on(), "0");
}
