#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `proto::daemon::memory::release_code` unmaps the pages of the running
//! executable (this test binary) that it had mapped: its resident code
//! and constants drop, nothing of its state is lost (the relocated RELRO
//! part and the data stay), and code run afterwards gives the same
//! answers, its pages mapped back from the file.

/// Resident KiB of this executable's code.
fn exe_rss_kib() -> u64 {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_str().unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let (mut code, mut mine, mut is_code) = (0, false, false);
    for l in smaps.lines() {
        let mut f = l.split_whitespace();
        if let (Some(range), Some(perms)) = (f.next(), f.next())
            && range.contains('-')
            && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        {
            mine = f.nth(3) == Some(exe);
            is_code = perms == "r-xp";
        } else if let Some(kb) = l.strip_prefix("Rss:") {
            let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap();
            if mine && is_code {
                code += kb;
            }
        }
    }
    code
}

/// Work that runs a good deal of code: formatting, hashing, sorting.
fn busy() -> String {
    let mut v: Vec<String> = (0..2000)
        .map(|i| format!("{:x}-{i:08}", i * 7919))
        .collect();
    v.sort();
    let map: std::collections::HashMap<_, _> = v.iter().enumerate().collect();
    format!("{} {}", map.len(), v[1000])
}

#[test]
fn the_executables_pages_go_and_what_runs_after_comes_back_intact() {
    let before = busy();
    let ro_before = exe_rss_kib();
    assert!(ro_before > 0, "this test binary has resident code");
    proto::daemon::memory::release_code();
    let ro_after = exe_rss_kib();
    // What reading /proc and the test harness run maps straight back (in
    // the kernel's fault-around blocks of 64 KiB); the rest stays out.
    assert!(
        ro_after + 128 < ro_before,
        "resident code {ro_before} KiB before, {ro_after} KiB after"
    );
    // The same work again gives the same answer (its code and constants
    // are the file's, mapped back).
    assert_eq!(busy(), before);
}
