//! The `facd` binary: command line, logging, configuration, signals. All the
//! work is in the library; this file only wires it to the process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use facd::config::Config;
use facd::server::Server;

/// SIP feature-access-code service for call-centre agent states.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate the configuration: exit 0, or print every problem and exit 2.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("facd: {} is not valid:", cli.config.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    if let Some(Cmd::CheckConfig) = cli.command {
        println!(
            "{}: OK ({} listeners, {} queues, {} agents)",
            cli.config.display(),
            config.sip.listen.len(),
            config.queues.len(),
            config.agents.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("facd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        if !config.auth.required {
            tracing::warn!("auth.required = false: trusting the From user (lab mode)");
        }
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("facd: {e}");
                return ExitCode::from(1);
            }
        };
        // Handlers first, so a signal right after the "listening" line is ours.
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("facd: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        };
        let addrs: Vec<String> = server
            .local_addrs()
            .iter()
            .map(|(p, a)| format!("{p}:{a}"))
            .collect();
        // Tests and scripts read this line to learn the ephemeral ports.
        println!("facd listening on {}", addrs.join(" "));
        tracing::info!(listen = %addrs.join(" "), "facd started");
        // The core loop runs as a task, not on the thread that blocks on
        // the runtime: with facd on one CPU it then shares the worker with
        // the readers, and handing a message over wakes no other thread.
        match tokio::spawn(server.run(shutdown)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("facd: the server task failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT; the handlers are installed at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
