//! floor: the reference forwarder of `scripts/bench.sh`, the minimal actix-web + awc proxy on
//! tollgate's own Cargo.lock. It measures what this stack costs per request before tollgate
//! does anything of its own; `forward.rs` lists what it does and what it leaves out.
//!
//! ```text
//! cargo build --release --example floor
//! target/release/examples/floor 127.0.0.1:8284 http://127.0.0.1:9001 http://127.0.0.1:9002
//! FLOOR_BACKENDS=http://127.0.0.1:9001,http://127.0.0.1:9002 target/release/examples/floor 127.0.0.1:8284 --workers 2
//! ```
//!
//! Like the `tollgate` binary, it allocates with mimalloc, so that the two differ by their
//! code, not by their allocator.

mod forward;

use std::{net::TcpListener, process::ExitCode};

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The minimal actix-web + awc forwarder (tollgate's benchmark reference).
#[derive(Parser, Debug)]
#[command(name = "floor")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8284.
    listen: String,
    /// Backend base URLs (http://host:port), taken round-robin.
    #[arg(env = "FLOOR_BACKENDS", value_delimiter = ',', required = true)]
    backends: Vec<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let backends = match args
        .backends
        .iter()
        .map(|b| forward::Backend::parse(b))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let run = actix_web::rt::System::new()
        .block_on(async move { forward::serve(listener, backends, args.workers.max(1))?.await });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}
