//! `search`: prints the lines of workspace files that match a pattern.
//!
//! ```text
//! search [-i] [--max N] PATTERN [PATH...]
//! ```
//!
//! Walks each PATH (default: the workspace root) through `fs.list-dir` and
//! `fs.read`, so it sees exactly what its manifest lets it read. Prints
//! `path:line: text` for each match; skipped files (binary, too large,
//! refused) are counted on stderr. Exit status: 0 when something matched,
//! 1 when nothing did, 2 on bad usage.

use regex_lite::RegexBuilder;
use sandbox_tool::fs::{self, Kind};
use sandbox_tool::{describe, join, task};
use std::process::ExitCode;

struct Search {
    re: regex_lite::Regex,
    max: usize,
    matches: usize,
    files: usize,
    skipped: Vec<String>,
}

impl Search {
    fn walk(&mut self, path: &str, kind: Kind) {
        if self.matches >= self.max {
            return;
        }
        match kind {
            Kind::Dir => match fs::list_dir(path) {
                Ok(entries) => {
                    for e in entries {
                        self.walk(&join(path, &e.name), e.kind);
                    }
                }
                Err(e) => self.skipped.push(format!("{path}: {}", describe(&e))),
            },
            Kind::File => self.file(path),
            Kind::Symlink => match fs::stat(path) {
                // Follow a link to a file only: directory links could loop.
                Ok(_) => self.file(path),
                Err(e) => self.skipped.push(format!("{path}: {}", describe(&e))),
            },
            Kind::Other => {}
        }
    }

    fn file(&mut self, path: &str) {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) => return self.skipped.push(format!("{path}: {}", describe(&e))),
        };
        self.files += 1;
        if data[..data.len().min(8192)].contains(&0) {
            return self.skipped.push(format!("{path}: binary"));
        }
        let text = String::from_utf8_lossy(&data);
        for (i, line) in text.lines().enumerate() {
            if self.re.is_match(line) {
                println!("{path}:{}: {line}", i + 1);
                self.matches += 1;
                if self.matches >= self.max {
                    return;
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let mut ignore_case = false;
    let mut max = usize::MAX;
    while let Some(a) = args.peek() {
        match a.as_str() {
            "-i" => ignore_case = true,
            "--max" => {
                args.next();
                match args.peek().and_then(|n| n.parse().ok()) {
                    Some(n) => max = n,
                    None => return usage("--max takes a number"),
                }
            }
            _ => break,
        }
        args.next();
    }
    let Some(pattern) = args.next() else { return usage("missing PATTERN") };
    let re = match RegexBuilder::new(&pattern).case_insensitive(ignore_case).build() {
        Ok(re) => re,
        Err(e) => return usage(&format!("bad pattern: {e}")),
    };
    let mut paths: Vec<String> = args.collect();
    if paths.is_empty() {
        paths.push(".".into());
    }
    task::set_intent(&format!("search the workspace for `{pattern}`"));
    let mut s = Search { re, max, matches: 0, files: 0, skipped: Vec::new() };
    for p in &paths {
        match fs::stat(p) {
            Ok(m) => s.walk(p, m.kind),
            Err(e) => s.skipped.push(format!("{p}: {}", describe(&e))),
        }
    }
    eprintln!("search: {} matches in {} files read", s.matches, s.files);
    for why in &s.skipped {
        eprintln!("search: skipped {why}");
    }
    if s.matches > 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("search: {msg}\nusage: search [-i] [--max N] PATTERN [PATH...]");
    ExitCode::from(2)
}
