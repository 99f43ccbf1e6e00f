//! The threads that carry calls' media: one per core, each running its own
//! single-threaded tokio runtime with its own epoll.
//!
//! A relayed packet is a receive and a send, so the cost to beat is what
//! surrounds them. On tokio's shared multi-threaded runtime, the worker that
//! polled epoll woke the other worker (a futex) to steal the calls it had
//! just made runnable, and both went back to sleep moments later: a fifth of
//! mediad's time at 200 calls went to those wake-ups and sleeps. Here a
//! call lives on one thread for its whole life, so a thread sleeps only in
//! epoll and wakes only for its own calls' packets. New calls go to the
//! thread carrying the fewest.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The media threads of mediad.
pub struct Runners {
    runners: Vec<Runner>,
}

struct Runner {
    handle: Handle,
    /// Calls on this thread now.
    calls: Arc<AtomicUsize>,
    tracker: TaskTracker,
}

impl Runners {
    /// Starts `threads` media threads (at least one). After `shutdown`,
    /// each waits up to `drain` for its calls to finish (they close their
    /// recordings) and then stops.
    pub fn start(
        threads: usize,
        shutdown: &CancellationToken,
        drain: Duration,
    ) -> std::io::Result<Self> {
        let mut runners = Vec::with_capacity(threads.max(1));
        for i in 0..threads.max(1) {
            let tracker = TaskTracker::new();
            let stop = shutdown.clone();
            let waited = tracker.clone();
            let handle =
                proto::daemon::own_thread(&format!("mediad-media-{i}"), move || async move {
                    stop.cancelled().await;
                    waited.close();
                    let _ = tokio::time::timeout(drain, waited.wait()).await;
                })?;
            runners.push(Runner {
                handle,
                calls: Arc::new(AtomicUsize::new(0)),
                tracker,
            });
        }
        Ok(Self { runners })
    }

    /// Runs a call's task on the media thread carrying the fewest calls.
    pub fn spawn<F>(&self, call: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let runner = self
            .runners
            .iter()
            .min_by_key(|r| r.calls.load(Ordering::Relaxed))
            .unwrap_or_else(|| unreachable!("Runners::start makes at least one"));
        runner.calls.fetch_add(1, Ordering::Relaxed);
        let count = Counted(Arc::clone(&runner.calls));
        let tracked = runner.tracker.track_future(async move {
            let _count = count;
            call.await;
        });
        runner.handle.spawn(tracked)
    }

    /// Calls on each media thread.
    #[cfg(test)]
    fn loads(&self) -> Vec<usize> {
        self.runners
            .iter()
            .map(|r| r.calls.load(Ordering::Relaxed))
            .collect()
    }
}

/// One call on a thread's count, given back however the call's task ends
/// (a panic included).
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_go_to_the_least_loaded_thread_and_stop_with_shutdown() {
        let stop = CancellationToken::new();
        let runners = Runners::start(2, &stop, Duration::from_secs(1)).unwrap();
        let hold = CancellationToken::new();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let h = hold.clone();
            tasks.push(runners.spawn(async move { h.cancelled().await }));
        }
        assert_eq!(runners.loads(), vec![2, 2]);
        let names = runners.spawn(async {
            let name = std::thread::current().name().map(str::to_owned);
            assert!(name.unwrap().starts_with("mediad-media-"));
        });
        names.await.unwrap();
        hold.cancel();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(runners.loads(), vec![0, 0]);
        stop.cancel();
    }
}
