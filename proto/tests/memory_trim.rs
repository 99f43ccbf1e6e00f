#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `proto::daemon::memory::trim` hands freed heap memory back: 64 MiB of
//! small blocks are freed below a block still in use (so glibc's own
//! trimming of the heap's top cannot return them), and only the trim
//! brings the process's resident memory down.

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn freed_blocks_below_a_live_one_go_back_only_with_a_trim() {
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 64 * 1024 * 1024 / BLOCK;
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![(i % 251) as u8; BLOCK]).collect();
    // Still in use, above the freed ones.
    let pin = vec![1u8; BLOCK];
    drop(blocks);
    let before = rss_anon_kib();
    proto::daemon::memory::trim();
    let after = rss_anon_kib();
    assert_eq!(pin[0], 1);
    assert!(
        before.saturating_sub(after) > 32 * 1024,
        "RssAnon {before} KiB before the trim, {after} KiB after"
    );
}
