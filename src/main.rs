//! The `facd` binary: command line, logging, configuration, signals. All the
//! work is in the library; this file only wires it to the process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use facd::config::Config;
use facd::server::{LogHook, Server};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

/// mimalloc, not glibc's malloc: a SIP message's life is a burst of small
/// allocations freed on another path, which glibc's arenas serve with
/// locking, consolidation and heap trimming (a fifth of the CPU per call
/// under load, by `perf`); see README "Benchmarks".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SIP feature-access-code service for call-centre agent states.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    /// Log lines as text (the default) or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate the configuration: exit 0, or print every problem and exit 2.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let started = std::time::Instant::now();
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
    // The filter can be replaced by a configuration reload (`log.level`).
    let (filter, handle) = reload::Layer::new(EnvFilter::new(config.log_level()));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match cli.log_format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
    let set_level: LogHook = Arc::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    });
    raise_open_files_limit();
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
    tracing::info!(
        path = %cli.config.display(),
        queues = config.queues.len(),
        agents = config.agents.len(),
        ms = started.elapsed().as_millis() as u64,
        "configuration loaded"
    );
    runtime.block_on(async move {
        if !config.auth.required {
            tracing::warn!("auth.required = false: trusting the From user (lab mode)");
        }
        let server = match Server::bind(config).await {
            Ok(s) => s.reload_from(cli.config.clone(), Some(set_level)),
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
        if let Err(e) = reload_on_sighup(server.reload_handle()) {
            eprintln!("facd: cannot install the SIGHUP handler: {e}");
            return ExitCode::from(1);
        }
        let addrs: Vec<String> = server
            .local_addrs()
            .iter()
            .map(|(p, a)| format!("{p}:{a}"))
            .chain(server.http_addr().map(|a| format!("http:{a}")))
            .collect();
        // Tests and scripts read this line to learn the ephemeral ports.
        println!("facd listening on {}", addrs.join(" "));
        tracing::info!(
            listen = %addrs.join(" "),
            version = env!("CARGO_PKG_VERSION"),
            startup_ms = started.elapsed().as_millis() as u64,
            "facd started"
        );
        notify("READY=1");
        // The core loop runs as a task, not on the thread that blocks on
        // the runtime: with facd on one CPU it then shares the worker with
        // the readers, and handing a message over wakes no other thread.
        let shutdown = async move {
            shutdown.await;
            notify("STOPPING=1");
        };
        match tokio::spawn(server.run(shutdown)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("facd: the server task failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// Tells systemd (`Type=notify`) where facd is; nothing outside systemd.
fn notify(state: &str) {
    if let Err(e) = facd::sd_notify::notify(state) {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
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

/// Each SIGHUP reloads the configuration file (the server logs the outcome).
fn reload_on_sighup(handle: facd::server::ReloadHandle) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            notify("RELOADING=1");
            let _ = handle.reload().await;
            notify("READY=1");
        }
    });
    Ok(())
}

/// Raises the soft limit on open files to the hard one: every TCP phone is
/// a descriptor (`sip.max_tcp_connections`, default 8192), above the usual
/// soft limit of 1024.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
