//! Measures the built-in detectors on ordinary text: how much they find
//! (every finding in ordinary text is a false positive unless a person
//! decides it is a real or test secret) and how fast they run.
//!
//! ```text
//! cargo run --release -p sandbox-redact --example scan -- [--show] PATH...
//! ```
//!
//! Directories are walked (hidden entries and `target` skipped); every file
//! is redacted as one buffer. `--show` prints each finding as
//! `file: type: text`, the text cut to 60 characters, for a person to judge.

use sandbox_redact::{Counts, Redactor};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if path.is_dir() {
        if name.starts_with('.') && name.len() > 1 || name == "target" {
            return;
        }
        let Ok(entries) = std::fs::read_dir(path) else { return };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

fn main() {
    let mut show = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--show" {
            show = true;
        } else {
            walk(Path::new(&arg), &mut files);
        }
    }
    if files.is_empty() {
        eprintln!("usage: scan [--show] PATH...");
        std::process::exit(2);
    }
    let redactor = Redactor::builtin();
    let (mut bytes, mut lines, mut busy) = (0usize, 0usize, Duration::ZERO);
    let mut counts = Counts::new();
    let mut with_findings = 0usize;
    for file in &files {
        let Ok(data) = std::fs::read(file) else { continue };
        bytes += data.len();
        lines += data.iter().filter(|b| **b == b'\n').count();
        let t = Instant::now();
        let mut here = Counts::new();
        let out = redactor.redact_bytes(&data, &mut here);
        busy += t.elapsed();
        drop(out);
        if !here.is_empty() {
            with_findings += 1;
            counts.merge(&here);
            if show {
                let text = String::from_utf8_lossy(&data);
                for f in redactor.find(&text) {
                    let s: String = text[f.range].chars().take(60).collect();
                    println!("{}: {}: {}", file.display(), f.kind, s.escape_debug());
                }
            }
        }
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "{} files, {mb:.1} MB, {lines} lines; {} findings in {with_findings} files; {:?}",
        files.len(),
        counts.total(),
        counts.as_map()
    );
    println!("{:.0} MB/s ({:.3} s redacting)", mb / busy.as_secs_f64(), busy.as_secs_f64());
}
