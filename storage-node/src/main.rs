//! `storage-node`: the operator's command line.
//!
//! ```text
//! storage-node init   --data-dir DIR --capacity 500GiB --gateway MULTIADDR [--label k=v] [--listen MULTIADDR]
//! storage-node run    --data-dir DIR [--capacity SIZE] [--listen MULTIADDR] [--metrics-listen ADDR]
//! storage-node id     --data-dir DIR
//! storage-node status --data-dir DIR [--json]
//! storage-node scrub  --data-dir DIR [--rate SIZE]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use storage_node::config::{GatewayAddr, RawConfig, CONFIG_FILE};
use storage_node::identity;
use storage_node::store::DiskStore;
use storage_node::units::{format_size, parse_size};

#[derive(Debug, Parser)]
#[command(
    name = "storage-node",
    version,
    about = "Lend a disk to a decentralized S3 gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node: a data directory with its configuration and a new identity.
    Init {
        /// Where the node keeps its identity, configuration, index and pieces.
        #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
        data_dir: PathBuf,
        /// How much of the disk to lend, e.g. 500GiB or 2TB.
        #[arg(long)]
        capacity: String,
        /// A gateway to serve: a multiaddr ending in /p2p/<gateway peer id>. Repeat for more.
        #[arg(long = "gateway", required = true)]
        gateways: Vec<String>,
        /// A failure-domain label, key=value (region, zone, operator, …). Repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// An address to listen on, for gateways that can dial in. Repeat for more.
        #[arg(long = "listen")]
        listen: Vec<String>,
        /// Where /metrics and /health are served.
        #[arg(long, default_value = "127.0.0.1:9101")]
        metrics_listen: String,
    },
    /// Run the node until SIGINT or SIGTERM.
    Run {
        #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Print the node id (its libp2p peer id).
    Id {
        #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Pieces held, space used, last scrub and audits answered; works whether or not the node runs.
    Status {
        #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every piece now, with progress, while the node is stopped; lists the corrupt
    /// ones (exit 1 if any). The running node finds them again and has them rebuilt.
    Scrub {
        #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
        data_dir: PathBuf,
        /// Most bytes per second to re-hash, e.g. 200MiB (default: as fast as the disk goes).
        #[arg(long)]
        rate: Option<String>,
    },
}

/// `run`'s overrides of the configuration file, each also settable from the environment.
#[derive(Debug, Args)]
struct Overrides {
    /// Override the configured capacity.
    #[arg(long, env = "STORAGE_NODE_CAPACITY")]
    capacity: Option<String>,
    /// Override the configured listen addresses (repeat for more).
    #[arg(long = "listen", env = "STORAGE_NODE_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Override the configured metrics address.
    #[arg(long, env = "STORAGE_NODE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Override how many bytes per second the scrub re-hashes, e.g. 16MiB.
    #[arg(long, env = "STORAGE_NODE_SCRUB_RATE")]
    scrub_rate: Option<String>,
    /// Override the pause between two scrub passes, e.g. 24h.
    #[arg(long, env = "STORAGE_NODE_SCRUB_INTERVAL")]
    scrub_interval: Option<String>,
}

impl Overrides {
    fn apply(self, raw: &mut RawConfig) {
        if let Some(c) = self.capacity {
            raw.capacity = c;
        }
        if !self.listen.is_empty() {
            raw.listen = self.listen;
        }
        if let Some(m) = self.metrics_listen {
            raw.metrics_listen = m;
        }
        if let Some(r) = self.scrub_rate {
            raw.scrub_rate = r;
        }
        if let Some(i) = self.scrub_interval {
            raw.scrub_interval = i;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. }) {
        storage_node::daemon::tune_malloc();
    }
    let result = match cli.command {
        Command::Init {
            data_dir,
            capacity,
            gateways,
            labels,
            listen,
            metrics_listen,
        } => init(
            &data_dir,
            capacity,
            gateways,
            labels,
            listen,
            metrics_listen,
        ),
        Command::Run {
            data_dir,
            overrides,
        } => run(&data_dir, overrides),
        Command::Id { data_dir } => id(&data_dir),
        Command::Status { data_dir, json } => status(&data_dir, json),
        Command::Scrub { data_dir, rate } => scrub(&data_dir, rate.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init(
    data_dir: &Path,
    capacity: String,
    gateways: Vec<String>,
    labels: Vec<String>,
    listen: Vec<String>,
    metrics_listen: String,
) -> anyhow::Result<()> {
    let labels = labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => bail!("--label {l:?}: expected key=value"),
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let raw = RawConfig {
        capacity,
        gateways,
        listen,
        labels,
        metrics_listen,
        scrub_rate: "16MiB".into(),
        scrub_interval: "24h".into(),
    };
    // Validate everything before touching the disk.
    raw.validate(data_dir)?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let keypair = identity::create(data_dir)?;
    let config_path = data_dir.join(CONFIG_FILE);
    std::fs::write(&config_path, raw.to_toml()?)
        .with_context(|| format!("write {}", config_path.display()))?;
    let peer = keypair.public().to_peer_id();
    #[allow(clippy::print_stdout)]
    {
        println!("{peer}");
    }
    eprintln!(
        "created node {peer} in {} ({} of capacity)",
        data_dir.display(),
        format_size(parse_size(&raw.capacity)?),
    );
    Ok(())
}

fn run(data_dir: &Path, overrides: Overrides) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut raw = RawConfig::load(data_dir)?;
    overrides.apply(&mut raw);
    let config = raw.validate(data_dir)?;
    let keypair = identity::load(data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        storage_node::daemon::cancel_on_signals(shutdown.clone())?;
        storage_node::daemon::run(config, keypair, shutdown).await
    })
}

#[allow(clippy::print_stdout)] // printing the result is this command's job
fn scrub(data_dir: &Path, rate: Option<&str>) -> anyhow::Result<()> {
    use std::sync::Arc;
    use storage_node::store::{now_ms, DiskStoreOptions, PieceStore, ScrubResult};
    let config = RawConfig::load(data_dir)?.validate(data_dir)?;
    let rate = rate.map_or(Ok(u64::MAX), parse_size).context("--rate")?;
    let store = Arc::new(
        DiskStore::open(&config.data_dir, DiskStoreOptions::new(config.capacity))
            .context("open the piece store (a running node holds it: stop the node first)")?,
    );
    let stats = store.stats();
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    let mut shown = storage_node::progress::Progress::new();
    let mut corrupt = Vec::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let pieces: Arc<dyn PieceStore> = store.clone();
    let done = runtime.block_on(storage_node::scrub::scrub_all(
        pieces,
        rate,
        &cancel,
        |id, result, p| {
            if let ScrubResult::Corrupt(rot) = result {
                corrupt.push(format!("{id}: {rot}"));
            }
            shown.update(|| {
                let pct = (p.bytes * 100).checked_div(stats.used_bytes).unwrap_or(100);
                format!(
                    "scrub: {} of {} pieces, {} of {} ({pct}%), {} corrupt",
                    p.pieces,
                    stats.pieces,
                    format_size(p.bytes),
                    format_size(stats.used_bytes),
                    p.corrupt
                )
            });
        },
    ))?;
    shown.finish();
    let Some(done) = done else {
        bail!("scrub cancelled")
    };
    // `status` shows when the disk was last checked, and what was found.
    let mut counters = store.counters().context("read the node counters")?;
    counters.last_scrub_finished_ms = Some(now_ms());
    counters.scrub_corrupt_found += done.corrupt;
    store
        .save_counters(&counters)
        .context("save the node counters")?;
    println!(
        "{} pieces re-hashed ({}), {} corrupt",
        done.pieces,
        format_size(done.bytes),
        done.corrupt
    );
    for line in &corrupt {
        println!("corrupt: {line}");
    }
    if done.corrupt > 0 {
        bail!(
            "{} pieces are corrupt; start the node and its gateway will have them rebuilt",
            done.corrupt
        );
    }
    Ok(())
}

fn id(data_dir: &Path) -> anyhow::Result<()> {
    let peer = identity::load(data_dir)?.public().to_peer_id();
    #[allow(clippy::print_stdout)]
    {
        println!("{peer}");
    }
    Ok(())
}

/// The ledger lines of `status`: per gateway, the running totals and what its statements
/// credit.
fn ledger_text(accounts: &[storage_node::ledger::GatewayAccount]) -> String {
    let mut out = String::new();
    for a in accounts {
        let t = &a.totals;
        out.push_str(&format!(
            "\nledger     gateway {}\n           done:     {:.1} byte-hours held, {} sent, {} stored, {} audits proved, {} not\n",
            a.gateway,
            t.byte_hours(),
            format_size(t.egress_bytes),
            format_size(t.ingress_bytes),
            t.audits_passed,
            t.audits_failed,
        ));
        let c = &a.credited;
        let last = a.last.as_ref().map_or("none yet".to_string(), |s| {
            format!(
                "last period {}..{} ms",
                s.statement.period_start_ms, s.statement.period_end_ms
            )
        });
        out.push_str(&format!(
            "           credited: {:.1} byte-hours, {} sent, {} stored, {} of {} audits passed \
             ({} countersigned statements, {last})",
            c.byte_hours(),
            format_size(c.egress_bytes),
            format_size(c.ingress_bytes),
            c.audits_passed,
            c.audits_passed + c.audits_failed,
            a.statements,
        ));
    }
    out
}

/// What `status --json` prints.
#[derive(Debug, serde::Serialize)]
struct StatusReport {
    node_id: String,
    pieces: u64,
    used_bytes: u64,
    capacity_bytes: u64,
    audits_answered: u64,
    audits_failed: u64,
    last_scrub_finished_ms: Option<u64>,
    scrub_corrupt_found: u64,
    gateways: Vec<String>,
    /// The usage ledger: per gateway, what this node did for it (as last saved) and the
    /// statements it countersigned.
    ledger: Vec<storage_node::ledger::GatewayAccount>,
}

fn status(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let peer = identity::load(data_dir)?.public().to_peer_id();
    let config = RawConfig::load(data_dir)?.validate(data_dir)?;
    let index = data_dir.join("index");
    let seen = if index.exists() {
        Some(DiskStore::inspect(data_dir).context("read the piece index")?)
    } else {
        None
    };
    let (pieces, used) = seen.as_ref().map_or((0, 0), |s| (s.pieces, s.used_bytes));
    let (counters, state) = seen.map(|s| (s.counters, s.state)).unwrap_or_default();
    let ledger = storage_node::ledger::accounts_from(state);
    let gateways: Vec<String> = config
        .gateways
        .iter()
        .map(|g: &GatewayAddr| g.addr.to_string())
        .collect();
    let report = StatusReport {
        node_id: peer.to_string(),
        pieces,
        used_bytes: used,
        capacity_bytes: config.capacity,
        audits_answered: counters.audits_answered,
        audits_failed: counters.audits_failed,
        last_scrub_finished_ms: counters.last_scrub_finished_ms,
        scrub_corrupt_found: counters.scrub_corrupt_found,
        gateways: gateways.clone(),
        ledger: ledger.clone(),
    };
    let text = if json {
        serde_json::to_string_pretty(&report).context("format the status")?
    } else {
        let percent = used as f64 * 100.0 / config.capacity as f64;
        format!(
            "node       {peer}\n\
             pieces     {pieces}\n\
             used       {} of {} ({percent:.1} %)\n\
             audits     {} answered, {} failed\n\
             last scrub {}\n\
             corrupt    {} found by scrubs\n\
             gateways   {}",
            format_size(used),
            format_size(config.capacity),
            counters.audits_answered,
            counters.audits_failed,
            counters
                .last_scrub_finished_ms
                .map_or("never".to_string(), |t| format!("{t} ms since the epoch")),
            counters.scrub_corrupt_found,
            gateways.join(", "),
        ) + &ledger_text(&ledger)
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{text}");
    }
    Ok(())
}
