//! `bench-read`: the mediated side of the benchmarks (see BENCHMARKS.md).
//!
//! ```text
//! bench-read read N PATH   reads PATH N times through sandbox:host fs.read
//! bench-read id N          calls sandbox:host task.id N times (a host call
//!                          that is neither decided nor audited)
//! ```
//!
//! Prints the bytes read in total (or the calls made), so the work cannot
//! be optimised away; exits 1 on a refused read.

use sandbox_tool::{fs, task};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let count = |n: &str| n.parse::<u64>().unwrap_or_else(|_| fail(&format!("`{n}` is not a count")));
    match words.as_slice() {
        ["read", n, path] => {
            let mut total = 0u64;
            for _ in 0..count(n) {
                match fs::read(path) {
                    Ok(data) => total += data.len() as u64,
                    Err(e) => fail(&sandbox_tool::describe(&e)),
                }
            }
            println!("{total}");
        }
        ["id", n] => {
            let mut total = 0u64;
            for _ in 0..count(n) {
                total += task::id().len() as u64;
            }
            println!("{total}");
        }
        _ => fail("usage: bench-read read N PATH | id N"),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bench-read: {msg}");
    std::process::exit(1)
}
