//! `bench-plain`: the unmediated side of the benchmarks (see
//! BENCHMARKS.md); it imports nothing but WASI, so plain `wasmtime run`
//! runs it too.
//!
//! ```text
//! bench-plain              does nothing: the trivial tool
//! bench-plain read N PATH  reads PATH N times with std::fs::read
//!                          (wasi:filesystem; needs a preopened directory)
//! ```

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => {}
        ["read", n, path] => {
            let n: u64 = n.parse().unwrap_or_else(|_| fail(&format!("`{n}` is not a count")));
            let mut total = 0u64;
            for _ in 0..n {
                match std::fs::read(path) {
                    Ok(data) => total += data.len() as u64,
                    Err(e) => fail(&format!("{path}: {e}")),
                }
            }
            println!("{total}");
        }
        _ => fail("usage: bench-plain [read N PATH]"),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bench-plain: {msg}");
    std::process::exit(1)
}
