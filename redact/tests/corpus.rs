//! The corpus: every real-looking secret in `corpus/secrets.txt` is
//! caught, exactly, with its type; no near-miss in `corpus/near-misses.txt`
//! is touched; and ordinary text (this repository's own README and
//! sources, outside the files that hold test secrets on purpose) stays
//! nearly untouched. Run with `--nocapture` to see the rates.

#![allow(clippy::unwrap_used)]

use sandbox_redact::{Counts, Redactor};
use std::path::{Path, PathBuf};

fn corpus(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name)).unwrap()
}

/// `\n` is a newline, `\\` a backslash.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[test]
fn every_secret_in_the_corpus_is_caught_with_its_type() {
    let r = Redactor::builtin();
    let text = corpus("secrets.txt");
    let mut types = Counts::new();
    let mut missed = Vec::new();
    for line in lines(&text) {
        let (kind, marked) = line.split_once('\t').unwrap();
        let marked = unescape(marked);
        let (before, rest) = marked.split_once('«').unwrap();
        let (secret, after) = rest.split_once('»').unwrap();
        let input = format!("{before}{secret}{after}");
        let want = format!("{before}[redacted:{kind}]{after}");
        let mut counts = Counts::new();
        let got = r.redact(&input, &mut counts);
        if got != want || counts.get(kind) != 1 || counts.total() != 1 {
            missed.push(format!("{kind}: {input:?}\n  got  {got:?}\n  want {want:?}"));
        }
        types.add(kind, 1);
    }
    assert!(missed.is_empty(), "{} of {} not caught exactly:\n{}", missed.len(), types.total(), missed.join("\n"));
    // Every built-in detector is exercised.
    for b in sandbox_redact::BUILTINS {
        assert!(types.get(b.name) >= 1, "no corpus line for `{}`", b.name);
    }
    println!("secrets: {} caught of {} ({:?})", types.total(), types.total(), types.as_map());
}

#[test]
fn no_near_miss_is_touched() {
    let r = Redactor::builtin();
    let text = corpus("near-misses.txt");
    let hits: Vec<String> = lines(&text)
        .filter_map(|l| {
            let f = r.find(l);
            (!f.is_empty())
                .then(|| format!("{l:?}: {:?}", f.iter().map(|f| (f.kind, &l[f.range.clone()])).collect::<Vec<_>>()))
        })
        .collect();
    let n = lines(&text).count();
    println!("near-misses: {} flagged of {n}", hits.len());
    assert!(hits.is_empty(), "{} of {n} near-misses flagged:\n{}", hits.len(), hits.join("\n"));
    // All of it as one text, too: no finding across line boundaries.
    assert!(r.find(&text).is_empty(), "{:?}", r.find(&text));
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if path.is_dir() {
        // Build output, other workspaces, and test folders that hold
        // secrets on purpose (fixtures, this corpus).
        if name.starts_with('.') || ["target", "guests", "tests", "redact"].contains(&name) {
            return;
        }
        for e in std::fs::read_dir(path).unwrap().flatten() {
            walk(&e.path(), out);
        }
    } else if name.ends_with(".rs") || name.ends_with(".md") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn ordinary_text_is_nearly_untouched() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    walk(root, &mut files);
    let r = Redactor::builtin();
    let (mut lines, mut bytes, mut flagged) = (0usize, 0usize, Vec::new());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        lines += text.lines().count();
        bytes += text.len();
        for found in r.find(&text) {
            flagged.push(format!("{}: {}: {:?}", f.display(), found.kind, &text[found.range]));
        }
    }
    let rate = flagged.len() as f64 / lines.max(1) as f64;
    println!(
        "ordinary text: {} findings in {} files, {lines} lines, {bytes} bytes: {:.4}% of lines\n{}",
        flagged.len(),
        files.len(),
        rate * 100.0,
        flagged.join("\n")
    );
    assert!(lines > 10_000, "too little text to measure: {lines} lines");
    // Test URLs with `user:pw@` in unit tests count here; one finding in a
    // thousand lines is the bound.
    assert!(rate < 0.001, "{} findings in {lines} lines:\n{}", flagged.len(), flagged.join("\n"));
}
