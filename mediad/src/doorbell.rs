//! Wakers that say which of a task's sources woke it.
//!
//! A call's task waits on eight sources (four sockets, its command channel,
//! shutdown, two timers) and is woken about a hundred times a second by one
//! of them, nearly always a socket. Polling all eight on every wake-up cost
//! more than relaying the packet: each poll reads another structure the
//! CPU's cache no longer holds (a socket's readiness, the channel's queue).
//! Here each source is polled with its own waker, which marks its bit and
//! wakes the task; the task polls only the sources whose bit is set. A bit
//! is cleared just before its source is polled, so a wake-up arriving
//! during the poll sets it again and is not lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Wake, Waker};

use futures::task::AtomicWaker;

/// The shared half: which sources rang, and the task to wake.
struct Shared {
    rung: AtomicU32,
    task: AtomicWaker,
}

struct Bell {
    shared: Arc<Shared>,
    bit: u32,
}

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.rung.fetch_or(self.bit, Ordering::AcqRel);
        self.shared.task.wake();
    }
}

/// One task's doorbell with `N` sources (at most 32).
pub struct Doorbell<const N: usize> {
    shared: Arc<Shared>,
    wakers: [Waker; N],
}

impl<const N: usize> Default for Doorbell<N> {
    fn default() -> Self {
        const { assert!(N <= 32) };
        let shared = Arc::new(Shared {
            // Every source is polled on the first poll.
            rung: AtomicU32::new(u32::MAX),
            task: AtomicWaker::new(),
        });
        let wakers = std::array::from_fn(|i| {
            Waker::from(Arc::new(Bell {
                shared: Arc::clone(&shared),
                bit: 1 << i,
            }))
        });
        Self { shared, wakers }
    }
}

impl<const N: usize> Doorbell<N> {
    /// Called at the start of each poll of the task: later rings wake the
    /// task through `cx`.
    pub fn arm(&self, cx: &Context<'_>) {
        self.shared.task.register(cx.waker());
    }

    /// Whether source `i` rang since it was last taken; if so the ring is
    /// taken (cleared), and the source must be polled now, with
    /// [`Doorbell::context`]`(i)`.
    pub fn take(&self, i: usize) -> bool {
        let bit = 1 << i;
        self.shared.rung.load(Ordering::Acquire) & bit != 0
            && self.shared.rung.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Rings source `i` from the task itself: it is polled on the next
    /// poll (a source left with work, or one whose polling just became
    /// due).
    pub fn ring(&self, i: usize) {
        self.shared.rung.fetch_or(1 << i, Ordering::AcqRel);
    }

    /// The context to poll source `i` with: its wake-ups ring its bit.
    pub fn context(&self, i: usize) -> Context<'_> {
        Context::from_waker(&self.wakers[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;
    use std::time::Duration;
    use tokio::sync::mpsc::UnboundedReceiver;

    /// The next value of either channel, polling only those that rang.
    async fn next(
        bell: &Doorbell<2>,
        rxs: &mut [UnboundedReceiver<u8>; 2],
        polled: &mut [u32; 2],
    ) -> Option<u8> {
        std::future::poll_fn(|cx| {
            bell.arm(cx);
            for (i, rx) in rxs.iter_mut().enumerate() {
                if bell.take(i) {
                    polled[i] += 1;
                    if let Poll::Ready(v) = rx.poll_recv(&mut bell.context(i)) {
                        // It may hold more: polled again next time.
                        bell.ring(i);
                        return Poll::Ready(v);
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    #[tokio::test]
    async fn a_task_polls_only_the_sources_that_rang() {
        let (tx0, rx0) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let (tx1, rx1) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let mut rxs = [rx0, rx1];
        let bell = Doorbell::<2>::default();
        let mut polled = [0u32; 2];
        let quiet = Duration::from_millis(50);
        // The first poll looks at both.
        let waited = tokio::time::timeout(quiet, next(&bell, &mut rxs, &mut polled)).await;
        assert!(waited.is_err());
        assert_eq!(polled, [1, 1]);
        // Then only the one that rang.
        tx1.send(7).unwrap();
        assert_eq!(next(&bell, &mut rxs, &mut polled).await, Some(7));
        assert_eq!(polled, [1, 2]);
        tx0.send(1).unwrap();
        tx0.send(2).unwrap();
        assert_eq!(next(&bell, &mut rxs, &mut polled).await, Some(1));
        assert_eq!(next(&bell, &mut rxs, &mut polled).await, Some(2));
        assert_eq!(polled, [3, 2]);
        // Both were rung by the task after a value: each is polled once
        // more, finds nothing, and sleeps until its own wake-up.
        let waited = tokio::time::timeout(quiet, next(&bell, &mut rxs, &mut polled)).await;
        assert!(waited.is_err());
        assert_eq!(polled, [4, 3]);
        let mut noop = Context::from_waker(Waker::noop());
        assert!(
            pin!(next(&bell, &mut rxs, &mut polled))
                .poll(&mut noop)
                .is_pending()
        );
        assert_eq!(polled, [4, 3]);
    }
}
