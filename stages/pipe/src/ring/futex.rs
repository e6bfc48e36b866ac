//! Linux futex wait and wake on a word in shared memory.
//!
//! The ring's futex words live in a `MAP_SHARED` mapping used by several processes, so these
//! use the shared (not `FUTEX_PRIVATE_FLAG`) operations, which key the wait queue on the
//! physical page rather than on the process's address space.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout` (`None`: no limit).
///
/// Returns on a wake-up, a timeout, a signal, or at once when the word already differs. Callers
/// re-check their condition, so the cause is not reported.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let timespec = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let timespec_ptr = timespec
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the call, and
    // `timespec_ptr` is null or points to a timespec that outlives the call. FUTEX_WAIT only
    // reads the word and never writes user memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timespec_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every waiter sleeping on `word`, in any process.
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE reads no user memory beyond
    // using its address as the wait-queue key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    #[test]
    fn wait_returns_at_once_on_changed_word() {
        let word = AtomicU32::new(5);
        let start = Instant::now();
        wait(&word, 4, Some(Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        wait(&word, 0, Some(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn wake_ends_wait() {
        let word = Arc::new(AtomicU32::new(0));
        let waker = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                word.store(1, Ordering::Release);
                wake_all(&word);
            })
        };
        // A wake that comes first leaves the word at 1, so the wait returns at once.
        let start = Instant::now();
        while word.load(Ordering::Acquire) == 0 {
            wait(&word, 0, Some(Duration::from_secs(10)));
        }
        waker.join().expect("waker thread");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// Environment variable naming the segment when the test binary runs as the waiting child.
    const CHILD_ENV: &str = "CCSSL_FUTEX_CHILD_SEGMENT";

    /// Maximum time the child sleeps; a wake that does not cross processes lets it run out.
    const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

    fn words(map: &memmap2::MmapRaw) -> (&AtomicU32, &AtomicU32) {
        // SAFETY: the mapping is page aligned and at least 8 bytes long, any bit pattern is a
        // valid AtomicU32, and the mapping outlives the returned references' uses here.
        unsafe {
            let base = map.as_mut_ptr().cast::<AtomicU32>();
            (&*base, &*base.add(1))
        }
    }

    fn process_state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name, which may contain spaces.
        stat.rsplit_once(") ")?.1.chars().next()
    }

    #[test]
    fn wake_crosses_processes() {
        if let Ok(path) = std::env::var(CHILD_ENV) {
            let map = crate::shm::open_segment(std::path::Path::new(&path)).expect("open");
            let (word, ready) = words(&map);
            ready.store(1, Ordering::Release);
            let start = Instant::now();
            while word.load(Ordering::Acquire) == 0 && start.elapsed() < CHILD_TIMEOUT {
                wait(word, 0, Some(CHILD_TIMEOUT));
            }
            assert_eq!(word.load(Ordering::Acquire), 1, "child was never woken");
            return;
        }

        let path = crate::shm::segment_path(&crate::shm::new_run_id(), "futex-cross");
        let map = crate::shm::create_segment(&path, 4096).expect("create segment");
        let (word, ready) = words(&map);
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "ring::futex::tests::wake_crosses_processes",
                "--exact",
                "-q",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        // Waits until the child announced itself and the kernel reports it sleeping, which
        // after the announcement can only be the futex wait.
        while ready.load(Ordering::Acquire) == 0 || process_state(child.id()) != Some('S') {
            assert!(
                child.try_wait().expect("poll child").is_none(),
                "child exited early"
            );
            std::thread::yield_now();
        }
        let start = Instant::now();
        word.store(1, Ordering::Release);
        wake_all(word);
        let status = child.wait().expect("wait for child");
        let _ = std::fs::remove_file(&path);
        assert!(status.success(), "child failed: {status}");
        assert!(
            start.elapsed() < CHILD_TIMEOUT / 2,
            "woken only by its timeout"
        );
    }
}
