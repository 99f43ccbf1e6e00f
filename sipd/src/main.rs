//! The sipd binary: [`proto::daemon::main`] runs [`sipd::Daemon`], with
//! mimalloc as its allocator.
//!
//! A REGISTER is about forty short-lived allocations (header strings, the
//! parsed request, the response), and under a flood glibc's malloc was a
//! fifth of sipd's time; with mimalloc sipd holds 22,000 REGISTERs/s
//! instead of 18,000-20,000 on two cores (docs/performance.md). mimalloc is
//! built without transparent huge pages (they left sipd at 70 MiB after a
//! flood) and told to hand freed pages back at once instead of after 1 s,
//! which keeps sipd's memory after a flood where glibc's was.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay` (`include/mimalloc.h`), which
/// libmimalloc-sys gives no name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // SAFETY: mi_option_set stores an integer in mimalloc's option table;
    // it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0)
    };
    proto::daemon::main::<sipd::Daemon>().await
}
