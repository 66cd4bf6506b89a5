//! `hog`: abuses resources so tests can check each limit stops it.
//!
//! ```text
//! hog spin | alloc | recurse | flood | panic | exit N | sleep SECS
//!     | calls N | bigpath MIB
//! ```

use sandbox_tool::fs;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;

#[allow(unconditional_recursion)] // the point: exhaust the stack
fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    black_box(recurse(pad[3] + 1)) + pad[7]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "spin" => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hold = Vec::new();
            loop {
                hold.push(vec![1u8; 1 << 20]);
                black_box(&hold);
            }
        }
        "recurse" => println!("{}", recurse(0)),
        "flood" => {
            let line = [b'y'; 4095];
            let mut out = std::io::stdout();
            loop {
                let _ = out.write_all(&line);
                let _ = out.write_all(b"\n");
            }
        }
        "panic" => panic!("the tool panicked on purpose"),
        "exit" => std::process::exit(arg(1).parse().unwrap_or(9)),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(arg(1).parse().unwrap_or(3600)));
            println!("woke up");
        }
        "calls" => {
            let n: u64 = arg(1).parse().unwrap_or(10);
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for _ in 0..n {
                let k = match fs::stat(".") {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => sandbox_tool::describe(&e).split(':').next().unwrap_or("").to_owned(),
                };
                *counts.entry(k).or_default() += 1;
            }
            println!("{counts:?}");
        }
        "bigpath" => {
            let mib: usize = arg(1).parse().unwrap_or(16);
            let path = "a/".repeat(mib << 19);
            match fs::read(&path) {
                Ok(_) => println!("bigpath: read succeeded"),
                Err(e) => println!("bigpath: {}", sandbox_tool::describe(&e).split(':').next().unwrap_or("")),
            }
        }
        other => {
            eprintln!("hog: unknown mode `{other}`");
            std::process::exit(2);
        }
    }
}
