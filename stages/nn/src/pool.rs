//! The rayon pool every parallel kernel of the engine runs on.

use crate::NnError;

/// A rayon thread pool of a fixed, configured size.
///
/// Every public entry point that runs parallel work takes a `&ThreadPool` and installs it, so
/// no kernel falls back to rayon's global pool. Results do not depend on the thread count:
/// work is split into chunks whose boundaries depend only on tensor shapes.
#[derive(Debug)]
pub struct ThreadPool {
    inner: rayon::ThreadPool,
    threads: usize,
}

impl ThreadPool {
    /// Builds a pool of `threads` worker threads.
    ///
    /// # Errors
    /// [`NnError::Config`] for zero threads, [`NnError::ThreadPool`] when rayon fails.
    pub fn new(threads: usize) -> Result<Self, NnError> {
        if threads == 0 {
            return Err(NnError::Config {
                name: "threads",
                value: "0".into(),
                reason: "use at least 1 thread".into(),
            });
        }
        let inner = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ccssl-nn-{i}"))
            .build()
            .map_err(|source| NnError::ThreadPool { threads, source })?;
        tracing::debug!(threads, "built the engine thread pool");
        Ok(Self { inner, threads })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` inside the pool, so rayon calls within it use these threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.inner.install(f)
    }
}
