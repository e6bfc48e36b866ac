//! Child processes: spawning with PR_SET_PDEATHSIG, reaping, signals.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

use ccssl_pipe::graph::Program;
use ccssl_pipe::stage::{LAUNCH_ENV, Launch};

/// SIGINT and SIGTERM received so far.
static STOP_SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP_SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Counts SIGINT and SIGTERM instead of dying, so the loop can stop the run gracefully.
pub(crate) fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is plain old data; all-zero is a valid empty value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_stop_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: the handler only touches an atomic, which is async-signal-safe; `action`
        // is fully initialised and the old action is not requested.
        unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// SIGINT and SIGTERM received since [`install_signal_handlers`].
pub(crate) fn stop_signals() -> u32 {
    STOP_SIGNALS.load(Ordering::Relaxed)
}

/// Starts one replica: this binary's hidden `stage` subcommand or the `Exec` program, with
/// its launch description in the environment and stdout and stderr appended to `log`.
pub(crate) fn spawn(program: &Program, launch: &Launch, log: &File) -> Result<u32> {
    let mut command = match program {
        Program::Builtin => {
            let exe = std::env::current_exe().context("cannot find the ccssl-run executable")?;
            let mut command = Command::new(exe);
            command.arg("stage");
            command
        }
        Program::Exec { path, args } => {
            let mut command = Command::new(path);
            command.args(args);
            command
        }
    };
    let launch_text = ron::to_string(launch).context("cannot write the launch description")?;
    command
        .env(LAUNCH_ENV, launch_text)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the log file")?)
        .stderr(log.try_clone().context("cannot share the log file")?);
    // SAFETY: getpid is async-signal-safe and called before the fork.
    let supervisor = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // The child gets SIGKILL when the supervisor dies, so no stage outlives it.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor may have died before prctl took effect.
            if libc::getppid() != supervisor {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| match program {
        Program::Builtin => "cannot start a stage process".to_string(),
        Program::Exec { path, .. } => format!("cannot start {}", path.display()),
    })?;
    // The child is reaped with waitpid(-1) by the supervisor loop, not through `Child`.
    Ok(child.id())
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub(crate) fn send(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; a stale pid at worst yields ESRCH.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// End state of a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    pub(crate) fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// Describes the end as a phrase: "exited with status 1", "was killed by signal 9 (SIGKILL)".
    pub(crate) fn describe(self) -> String {
        match self {
            Exit::Code(code) => format!("exited with status {code}"),
            Exit::Signal(signal) => {
                format!("was killed by signal {signal} ({})", signal_name(signal))
            }
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "unnamed signal",
    }
}

/// Reaps one exited child without blocking.
pub(crate) fn reap() -> Option<(u32, Exit)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out pointer; WNOHANG makes the call non-blocking.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let exit = if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    };
    Some((pid as u32, exit))
}

/// Writes `stage replica pid` lines for the live processes, replacing the file atomically so
/// readers never see half of it.
pub(crate) fn write_pids(run_dir: &Path, lines: &str) -> Result<()> {
    let temp = run_dir.join("pids.tmp");
    std::fs::write(&temp, lines).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, run_dir.join("pids"))
        .with_context(|| format!("cannot write {}/pids", run_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_describes_code_and_signal() {
        assert_eq!(Exit::Code(3).describe(), "exited with status 3");
        assert_eq!(
            Exit::Signal(libc::SIGKILL).describe(),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            Exit::Signal(64).describe(),
            "was killed by signal 64 (unnamed signal)"
        );
        assert!(Exit::Code(0).success());
        assert!(!Exit::Signal(libc::SIGTERM).success());
    }

    #[test]
    // The child is reaped through `reap`, which is what this test checks.
    #[allow(clippy::zombie_processes)]
    fn reap_reports_signal_of_killed_child() {
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        send(pid, libc::SIGKILL);
        let mut reaped = None;
        for _ in 0..500 {
            if let Some(found) = reap() {
                reaped = Some(found);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(reaped, Some((pid, Exit::Signal(libc::SIGKILL))));
    }
}
