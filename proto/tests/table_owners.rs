#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Which crate writes which table, checked against the source: every SQL
//! write in the non-test code of the workspace's crates names a table that
//! `proto::tables::TABLE_WRITERS` lists that crate for, every writer listed
//! there still writes its table, and every table the migrations create has
//! an entry.
//!
//! A plain reading of the source, no parser: each `src/**/*.rs` is split
//! into identifiers, punctuation and string literals (comments dropped,
//! escapes and `\` line continuations of normal and raw strings undone).
//! Items under `#[cfg(test)]` or a `#[test]`-like attribute, and the files
//! of `#[cfg(test)] mod x;`, are dropped, so only non-test code counts.
//! The SQL writes are then found in every string literal, case-insensitive
//! and with any whitespace: `INSERT [OR x] INTO t`, `REPLACE INTO t`,
//! `DELETE FROM t`, `UPDATE [OR x] t SET` (not an upsert's `DO UPDATE SET`),
//! with `main.` and quotes around `t` removed. A crate also writes a table
//! when it names one of proto's `WRITE_HELPERS` (`db::alert` ...).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proto::tables::{EVERY_TABLE, RUN_TIME_NAMED, TABLE_WRITERS, WRITE_HELPERS};

/// Workspace members whose code is not scanned, and why.
const NOT_SCANNED: &[(&str, &str)] = &[(
    "e2e",
    "system tests and their tools (the Twilio stand-in `make demo` runs, the \
     benchmarks), which set up a database directly as a test fixture does",
)];

#[test]
fn every_write_is_by_a_listed_writer_and_every_listed_writer_writes() {
    let root = workspace_root();
    let crates = scanned_crates(&root);
    let listed: BTreeMap<&str, &[&str]> = TABLE_WRITERS.iter().copied().collect();
    let helper_tables: BTreeSet<&str> = WRITE_HELPERS.iter().map(|(_, t)| *t).collect();
    let mut wrong = Vec::new();
    // (table, crate) pairs seen in the code.
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    // RUN_TIME_NAMED entries (crate, file) with a write found.
    let mut run_time_used: BTreeSet<(&str, &str)> = BTreeSet::new();

    for krate in &crates {
        for w in crate_writes(&root, krate) {
            let at = format!("{}:{}", w.file, w.line);
            match &w.table {
                Target::RunTime => {
                    let entry = RUN_TIME_NAMED
                        .iter()
                        .find(|(c, f, _)| c == krate && w.file == format!("{krate}/{f}"));
                    match entry {
                        Some((c, f, tables)) => {
                            run_time_used.insert((c, f));
                            for t in tables.iter().filter(|t| **t != EVERY_TABLE) {
                                seen.insert((t.to_string(), krate.clone()));
                            }
                        }
                        None => wrong.push(format!(
                            "{at}: writes a table named at run time; list the file and the \
                             tables it names in proto::tables::RUN_TIME_NAMED"
                        )),
                    }
                }
                Target::Named(t) if krate == "proto" => {
                    if !helper_tables.contains(t.as_str()) {
                        wrong.push(format!(
                            "{at}: proto writes `{t}`, which no entry of \
                             proto::tables::WRITE_HELPERS names"
                        ));
                    }
                }
                Target::Named(t) => {
                    seen.insert((t.clone(), krate.clone()));
                }
            }
        }
        if krate != "proto" {
            for (_, table) in helper_uses(&root, krate) {
                seen.insert((table.to_string(), krate.clone()));
            }
        }
    }
    for (table, krate) in &seen {
        match listed.get(table.as_str()) {
            None => wrong.push(format!(
                "{krate} writes `{table}`, which proto::tables::TABLE_WRITERS does not list"
            )),
            Some(w) if !w.contains(&krate.as_str()) => wrong.push(format!(
                "{krate} writes `{table}`, but proto::tables::TABLE_WRITERS lists only {w:?}; \
                 see {}",
                where_written(&root, krate, table).join(", ")
            )),
            Some(_) => {}
        }
    }
    for (table, writers) in TABLE_WRITERS {
        for w in *writers {
            if !crates.iter().any(|c| c == w) {
                wrong.push(format!("`{table}` lists {w}, which is no scanned crate"));
            } else if !seen.contains(&(table.to_string(), w.to_string())) {
                wrong.push(format!(
                    "`{table}` lists {w} as a writer, but no write of {w} to it was found"
                ));
            }
        }
    }
    for (krate, file, tables) in RUN_TIME_NAMED {
        if !run_time_used.contains(&(*krate, *file)) {
            wrong.push(format!(
                "RUN_TIME_NAMED lists {krate}/{file}, but no write with a table named at run \
                 time was found there"
            ));
        }
        for t in tables.iter().filter(|t| **t != EVERY_TABLE) {
            if !listed.get(t).is_some_and(|w| w.contains(krate)) {
                wrong.push(format!(
                    "RUN_TIME_NAMED says {krate}/{file} writes `{t}`; TABLE_WRITERS must list {krate} for it"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}\n", wrong.join("\n"));
}

#[test]
fn every_table_of_the_migrations_has_an_entry() {
    let tables = migration_tables(&workspace_root().join("proto/migrations"));
    assert!(
        tables.contains("cdrs"),
        "the migrations were not read: {tables:?}"
    );
    let mut wrong = Vec::new();
    let mut listed = BTreeSet::new();
    for (t, _) in TABLE_WRITERS {
        if !listed.insert(*t) {
            wrong.push(format!(
                "`{t}` is listed twice in proto::tables::TABLE_WRITERS"
            ));
        }
        if !tables.contains(*t) {
            wrong.push(format!(
                "`{t}` is in TABLE_WRITERS but no migration creates it"
            ));
        }
    }
    for t in &tables {
        if !listed.contains(t.as_str()) {
            wrong.push(format!(
                "the migrations create `{t}`: add it to proto::tables::TABLE_WRITERS with the \
                 crates that write it"
            ));
        }
    }
    for (_, t) in WRITE_HELPERS {
        if !listed.contains(t) {
            wrong.push(format!(
                "WRITE_HELPERS names `{t}`, which TABLE_WRITERS does not list"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}\n", wrong.join("\n"));
}

#[test]
fn the_scan_finds_each_form_of_write_in_non_test_code_only() {
    let src = r####"
        //! INSERT INTO in_a_comment (a) VALUES (1)
        const A: &str = "INSERT INTO plain (a) VALUES (?)";
        fn f() {
            sqlx::query("insert or ignore into lower_case (a) values (?)");
            sqlx::query(
                "UPDATE
                    multi_line
                 SET a = 1",
            );
            sqlx::query("DELETE \
                         FROM continued WHERE id = ?");
            sqlx::query(r#"REPLACE INTO main."quoted"(a) VALUES ('"')"#);
            sqlx::query("INSERT INTO upserted (k) VALUES (?) ON CONFLICT(k) DO UPDATE SET k = excluded.k");
            sqlx::query(&format!("DELETE FROM {table} WHERE id = ?"));
            tracing::error!("cannot update CDR");
            let c = '"'; let l: &'static str = "UPDATE OR ROLLBACK after_char SET a = 1";
            /* "INSERT INTO in_a_block_comment" */
        }
        #[cfg(test)]
        mod tests {
            #[test]
            fn t() { sqlx::query("INSERT INTO in_a_test (a) VALUES (1)"); }
        }
        #[test]
        fn loose() { let _ = "DELETE FROM in_a_loose_test"; }
        #[cfg(test)] mod out_of_line;
        const B: [&str; 1] = ["UPDATE after_tests SET a = 1"];
    "####;
    let (toks, test_mods) = non_test_tokens(&lex(src));
    let mut found: Vec<String> = strings(&toks)
        .flat_map(|(s, _)| written_tables(&s))
        .map(|t| match t {
            Target::Named(n) => n,
            Target::RunTime => "{run time}".into(),
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "after_char",
            "after_tests",
            "continued",
            "lower_case",
            "multi_line",
            "plain",
            "quoted",
            "upserted",
            "{run time}"
        ]
    );
    assert_eq!(test_mods, ["out_of_line"]);
}

#[test]
fn a_crate_naming_a_write_helper_writes_its_table() {
    let src = "async fn f(p: &Pool) { proto::db::alert(p, \"x\", \"k\", \"m\").await; \
               let _ = proto::settings::Settings::load(p); }";
    let (toks, _) = non_test_tokens(&lex(src));
    assert_eq!(helpers_named(&toks), [("db::alert", "alerts")]);
}

/// One SQL write found in the source.
#[derive(Debug)]
struct Write {
    /// Path from the workspace root.
    file: String,
    line: usize,
    table: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Named(String),
    /// A `format!` placeholder: the table is known only at run time.
    RunTime,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto lives in the workspace")
        .to_path_buf()
}

/// The workspace's members (from its Cargo.toml) but [`NOT_SCANNED`].
fn scanned_crates(root: &Path) -> Vec<String> {
    let toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace Cargo.toml");
    let line = toml
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let members: Vec<String> = line
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    for (c, _) in NOT_SCANNED {
        assert!(members.iter().any(|m| m == c), "{c} is no workspace member");
    }
    let crates: Vec<String> = members
        .into_iter()
        .filter(|m| !NOT_SCANNED.iter().any(|(c, _)| c == m))
        .collect();
    assert!(
        ["proto", "sipd", "mediad", "twiliod", "notifyd", "webd"]
            .iter()
            .all(|c| crates.iter().any(|m| m == c)),
        "{crates:?}"
    );
    crates
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The non-test tokens of each source file of `krate`, with its path from
/// the workspace root.
fn crate_sources(root: &Path, krate: &str) -> Vec<(String, Vec<Tok>)> {
    let files = rust_files(&root.join(krate).join("src"));
    let mut parsed = Vec::new();
    let mut test_files: Vec<PathBuf> = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let (toks, test_mods) = non_test_tokens(&lex(&src));
        let dir = match f.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => f.parent().expect("a parent").to_path_buf(),
            _ => f.with_extension(""),
        };
        for m in test_mods {
            test_files.push(dir.join(format!("{m}.rs")));
            test_files.push(dir.join(&m));
        }
        parsed.push((f.clone(), toks));
    }
    parsed
        .into_iter()
        .filter(|(f, _)| !test_files.iter().any(|t| f.starts_with(t)))
        .map(|(f, toks)| {
            let rel = f
                .strip_prefix(root)
                .expect("under the root")
                .display()
                .to_string();
            (rel, toks)
        })
        .collect()
}

fn crate_writes(root: &Path, krate: &str) -> Vec<Write> {
    let mut out = Vec::new();
    for (file, toks) in crate_sources(root, krate) {
        for (s, line) in strings(&toks) {
            for table in written_tables(&s) {
                out.push(Write {
                    file: file.clone(),
                    line,
                    table,
                });
            }
        }
    }
    out
}

fn helper_uses(root: &Path, krate: &str) -> Vec<(&'static str, &'static str)> {
    crate_sources(root, krate)
        .iter()
        .flat_map(|(_, toks)| helpers_named(toks))
        .collect()
}

/// Where `krate` writes `table`, for the failure message.
fn where_written(root: &Path, krate: &str, table: &str) -> Vec<String> {
    let mut at: Vec<String> = crate_writes(root, krate)
        .into_iter()
        .filter(|w| w.table == Target::Named(table.to_owned()))
        .map(|w| format!("{}:{}", w.file, w.line))
        .collect();
    if helper_uses(root, krate).iter().any(|(_, t)| *t == table) {
        at.push(format!(
            "a proto::tables::WRITE_HELPERS function named in {krate}"
        ));
    }
    at
}

/// The tables the migrations leave behind (created, not dropped).
fn migration_tables(dir: &Path) -> BTreeSet<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut tables = BTreeSet::new();
    for f in files {
        let sql: String = std::fs::read_to_string(&f)
            .expect("migration")
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let w = sql_words(&sql);
        let at = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
        for i in 0..w.len() {
            match (at(i), at(i + 1)) {
                ("create", _) => {
                    let mut j = i + 1;
                    if matches!(at(j), "temp" | "temporary" | "virtual") {
                        j += 1;
                    }
                    if at(j) != "table" {
                        continue;
                    }
                    j += 1;
                    if at(j) == "if" {
                        j += 3;
                    }
                    tables.insert(table_name(at(j)));
                }
                ("drop", "table") => {
                    let j = if at(i + 2) == "if" { i + 4 } else { i + 2 };
                    tables.remove(&table_name(at(j)));
                }
                ("alter", "table") if at(i + 3) == "rename" && at(i + 4) == "to" => {
                    tables.remove(&table_name(at(i + 2)));
                    tables.insert(table_name(at(i + 5)));
                }
                _ => {}
            }
        }
    }
    tables
}

/// The tables one SQL text writes.
fn written_tables(sql: &str) -> Vec<Target> {
    let w = sql_words(sql);
    let at = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    let mut out = Vec::new();
    for i in 0..w.len() {
        let name = match at(i) {
            "insert" => {
                let j = if at(i + 1) == "or" { i + 3 } else { i + 1 };
                (at(j) == "into").then(|| at(j + 1))
            }
            "replace" => (at(i + 1) == "into").then(|| at(i + 2)),
            "delete" => (at(i + 1) == "from").then(|| at(i + 2)),
            // `ON CONFLICT ... DO UPDATE SET` writes the row the INSERT names.
            "update" if i == 0 || at(i - 1) != "do" => {
                let j = if at(i + 1) == "or" { i + 3 } else { i + 1 };
                (at(j + 1) == "set").then(|| at(j))
            }
            _ => None,
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            continue;
        };
        let t = if name.contains('{') {
            Target::RunTime
        } else {
            Target::Named(table_name(name))
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Lower-case words of SQL, split at whitespace and `(),;`.
fn sql_words(sql: &str) -> Vec<String> {
    sql.to_lowercase()
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `main."cdrs"` -> `cdrs`.
fn table_name(word: &str) -> String {
    let bare: String = word
        .chars()
        .filter(|c| !matches!(c, '"' | '`' | '[' | ']'))
        .collect();
    bare.strip_prefix("main.").unwrap_or(&bare).to_owned()
}

/// The proto write helpers that `toks` name (`db::alert` in
/// `proto::db::alert(..)` or `use proto::db::alert`).
fn helpers_named(toks: &[Tok]) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for w in toks.windows(4) {
        if let [
            Tok::Ident(a, _),
            Tok::Punct(':', _),
            Tok::Punct(':', _),
            Tok::Ident(b, _),
        ] = w
        {
            let path = format!("{a}::{b}");
            for (h, t) in WRITE_HELPERS {
                if *h == path && !out.contains(&(*h, *t)) {
                    out.push((*h, *t));
                }
            }
        }
    }
    out
}

/// A token of Rust source, with its line.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String, usize),
    Punct(char, usize),
    /// A string literal's value.
    Str(String, usize),
}

fn strings(toks: &[Tok]) -> impl Iterator<Item = (String, usize)> + '_ {
    toks.iter().filter_map(|t| match t {
        Tok::Str(s, line) => Some((s.clone(), *line)),
        _ => None,
    })
}

/// Splits Rust source into identifiers (numbers included), punctuation and
/// string literals; comments, whitespace and char literals are dropped.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            let start = line;
            let s;
            (s, i, line) = cooked(&c, i + 1, line);
            out.push(Tok::Str(s, start));
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}', '"') or a lifetime.
            if at(i + 1) == '\\' {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut hashes = 0;
            while at(i + hashes) == '#' {
                hashes += 1;
            }
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                let start_line = line;
                let s;
                (s, i, line) = raw(&c, i + hashes + 1, hashes, line);
                out.push(Tok::Str(s, start_line));
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                let start_line = line;
                let s;
                (s, i, line) = cooked(&c, i + 1, line);
                out.push(Tok::Str(s, start_line));
            } else {
                out.push(Tok::Ident(word, line));
            }
        } else {
            out.push(Tok::Punct(ch, line));
            i += 1;
        }
    }
    out
}

/// A normal string's value from just after its opening quote: the value,
/// the index after the closing quote, the line there. Escapes of
/// whitespace become a space; `\` before a newline swallows the
/// indentation that follows.
fn cooked(c: &[char], mut i: usize, mut line: usize) -> (String, usize, usize) {
    let mut s = String::new();
    while i < c.len() {
        match c[i] {
            '"' => return (s, i + 1, line),
            '\\' => {
                let e = c.get(i + 1).copied().unwrap_or('\\');
                i += 2;
                match e {
                    '\n' => {
                        line += 1;
                        while i < c.len() && c[i].is_whitespace() {
                            line += usize::from(c[i] == '\n');
                            i += 1;
                        }
                    }
                    'n' | 't' | 'r' | '0' => s.push(' '),
                    other => s.push(other),
                }
            }
            ch => {
                line += usize::from(ch == '\n');
                s.push(ch);
                i += 1;
            }
        }
    }
    (s, i, line)
}

/// A raw string's value from just after its opening quote.
fn raw(c: &[char], mut i: usize, hashes: usize, mut line: usize) -> (String, usize, usize) {
    let mut s = String::new();
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return (s, i + 1 + hashes, line);
        }
        line += usize::from(c[i] == '\n');
        s.push(c[i]);
        i += 1;
    }
    (s, i, line)
}

/// The tokens outside test-only items, and the names of test modules kept
/// in their own files (`#[cfg(test)] mod x;`). An inner `#![cfg(test)]`
/// makes the whole file test code.
fn non_test_tokens(toks: &[Tok]) -> (Vec<Tok>, Vec<String>) {
    let mut out = Vec::new();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !matches!(toks[i], Tok::Punct('#', _)) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        let inner = matches!(toks.get(i + 1), Some(Tok::Punct('!', _)));
        let open = if inner { i + 2 } else { i + 1 };
        if !matches!(toks.get(open), Some(Tok::Punct('[', _))) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        let close = matching(toks, open);
        if !is_test_attr(&toks[open + 1..close]) {
            i = close + 1;
            continue;
        }
        if inner {
            return (Vec::new(), Vec::new());
        }
        let end = item_end(toks, close + 1);
        let item = &toks[close + 1..=end.min(toks.len() - 1)];
        if let [
            ..,
            Tok::Ident(m, _),
            Tok::Ident(name, _),
            Tok::Punct(';', _),
        ] = item
            && m == "mod"
        {
            test_mods.push(name.clone());
        }
        i = end + 1;
    }
    (out, test_mods)
}

/// `#[test]`, `#[tokio::test(..)]`, `#[cfg(test)]`, `#[cfg(all(test, ..))]`.
fn is_test_attr(attr: &[Tok]) -> bool {
    let path: Vec<&str> = attr
        .iter()
        .take_while(|t| !matches!(t, Tok::Punct('(' | '=', _)))
        .filter_map(|t| match t {
            Tok::Ident(s, _) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let idents: Vec<&str> = attr
        .iter()
        .filter_map(|t| match t {
            Tok::Ident(s, _) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    path.last() == Some(&"test")
        || (path == ["cfg"]
            && idents.contains(&"test")
            && !idents.contains(&"not")
            && !idents.contains(&"any"))
}

/// The index of the bracket closing the one at `open`.
fn matching(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('(' | '[' | '{', _) => depth += 1,
            Tok::Punct(')' | ']' | '}', _) => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    toks.len() - 1
}

/// The last token of the item starting at `k` (after its attributes): its
/// `;` or `,`, the `}` closing its body, or the token before the bracket
/// closing the list it is in.
fn item_end(toks: &[Tok], mut k: usize) -> usize {
    while matches!(toks.get(k), Some(Tok::Punct('#', _)))
        && matches!(toks.get(k + 1), Some(Tok::Punct('[', _)))
    {
        k = matching(toks, k + 1) + 1;
    }
    let mut depth = 0;
    while k < toks.len() {
        match toks[k] {
            Tok::Punct('(' | '[' | '{', _) => depth += 1,
            // A field, variant or argument: its list closes after it.
            Tok::Punct(')' | ']' | '}', _) if depth == 0 => return k - 1,
            Tok::Punct(')' | ']', _) => depth -= 1,
            Tok::Punct('}', _) => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            Tok::Punct(';' | ',', _) if depth == 0 => return k,
            _ => {}
        }
        k += 1;
    }
    toks.len().saturating_sub(1)
}
