//! The `tollgate` binary: read `.env`, parse settings, build, run.

use std::process::ExitCode;

use clap::Parser;
use tollgate::{
    config::{Cli, Command, Settings},
    startup::Application,
};

/// mimalloc instead of glibc's allocator: every proxied request allocates and frees header
/// maps and buffers, and glibc's free lists (consolidation included) took about 7 % of the
/// gateway's CPU in a profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => {
            eprintln!("tollgate: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();

    if let Some(Command::DemoBackend { listen, name }) = &cli.command {
        tollgate::logging::init(
            &cli.log,
            tollgate::logging::LogFormat::parse(&cli.log_format).unwrap_or_default(),
        );
        let result = actix_web::rt::System::new().block_on(async {
            let listener = std::net::TcpListener::bind(listen)?;
            // The bound address, so that port 0 is usable (the tests start it so).
            log::info!(
                "demo backend {name} listening on http://{}",
                listener.local_addr()?
            );
            tollgate::demo::serve(listener, name.clone(), true)?.await
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate demo-backend: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: invalid configuration:");
            for problem in &e.0 {
                eprintln!("  {problem}");
            }
            return ExitCode::from(2);
        }
    };
    tollgate::logging::init(&settings.log, settings.log_format);

    let system = actix_web::rt::System::new();
    let result = system.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await?;
        actix_web::rt::System::current().stop();
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}
