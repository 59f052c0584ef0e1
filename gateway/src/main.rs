//! The `gateway` binary: `run` a gateway from its configuration, start a whole local network
//! with `dev`, and manage access `keys`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::RawConfig;
use gateway::hybrid::{Credentials, MirrorMode, RemoteConfig, TierPolicy};
use gateway::server::{open_state, Gateway};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "S3 gateway storing objects erasure-coded on storage nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a gateway until SIGINT or SIGTERM.
    Run {
        /// A TOML configuration file (GATEWAY_* environment variables override it).
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Start a complete local network: this gateway plus N storage-node processes.
    Dev {
        /// Storage nodes to run.
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Directory for the gateway's and the nodes' data (reused on the next run).
        #[arg(long, default_value = "./data/dev")]
        data: PathBuf,
        /// Where S3 clients connect; the admin port is the next one, nodes dial port + 10.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// How nodes and gateway talk: tcp (TLS + Yamux) or quic. Nodes keep the gateway
        /// address they were made with: use a new --data to switch.
        #[arg(long, env = "GATEWAY_DEV_TRANSPORT", default_value = "tcp", value_parser = ["tcp", "quic"])]
        transport: String,
    },
    /// Nodes, capacity and health of a running gateway (from its admin API).
    Status {
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Export audit transcripts from a running gateway, or re-check an export offline.
    Audit {
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Per-node usage from the running gateway's ledger: byte-hours stored, bytes served and
    /// stored, audits passed and failed, as measured, as the nodes claimed, and as credited.
    Ledger {
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Periods starting at or after this: ms since the epoch, or an age such as `30d`.
        #[arg(long)]
        from: Option<String>,
        /// Periods starting before this: ms since the epoch, or an age such as `1h`.
        #[arg(long)]
        to: Option<String>,
        /// Only this node (its id).
        #[arg(long)]
        node: Option<String>,
        /// table, csv or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Print the signed statements instead (one JSON object per line), which anyone can
        /// check with `--verify`.
        #[arg(long)]
        statements: bool,
        /// Check every statement in this file (from `--statements`) offline: the gateway's and
        /// the nodes' signatures and the credit rule.
        #[arg(long, conflicts_with_all = ["from", "to", "node", "statements"])]
        verify: Option<PathBuf>,
    },
    /// Pair a bucket with a bucket on another S3 service (mirror, fallback), through the
    /// running gateway's admin API.
    Remote {
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: RemoteAction,
    },
    /// Manage S3 access keys and their bucket grants (through a running gateway's admin API,
    /// effective at once; on the metadata directly while it is stopped).
    Keys {
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Write transcripts (one JSON object per line) from the running gateway's admin API.
    Export {
        /// Only this node's audits (its id).
        #[arg(long)]
        node: Option<String>,
        /// Only audits from this time on: ms since the epoch, or an age such as `24h`.
        #[arg(long)]
        since: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Re-check every proof and signature in an export, trusting nothing but the file.
    Verify { file: PathBuf },
}

#[derive(Debug, clap::Args)]
struct RemoteSet {
    /// Our bucket.
    bucket: String,
    /// The remote bucket's name.
    #[arg(long)]
    remote_bucket: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The S3 endpoint URL (default: AWS S3's for the region).
    #[arg(long)]
    endpoint: Option<String>,
    /// Prepended to every key in the remote bucket.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Path-style addressing (most S3-compatible services need it).
    #[arg(long)]
    path_style: bool,
    /// Copy every write and delete to the remote: off, async (queued) or sync (a write is
    /// acknowledged once the remote holds it).
    #[arg(long, default_value = "off")]
    mirror: String,
    /// Serve keys this bucket lacks from the remote.
    #[arg(long)]
    fallback: bool,
    /// With --fallback: copy objects read from the remote into this bucket.
    #[arg(long)]
    copy_in: bool,
    /// Move objects at least this old (e.g. 30d) to the remote.
    #[arg(long)]
    tier_older_than: Option<String>,
    /// Move objects at least this large (e.g. 100MiB) to the remote.
    #[arg(long)]
    tier_larger_than: Option<String>,
    /// Move (matching) objects only while the nodes' free space is below this share (e.g. 10%).
    #[arg(long)]
    tier_when_free_below: Option<String>,
    /// Parity in the cloud: new segments' parity pieces go to the remote, data pieces to nodes.
    #[arg(long)]
    parity: bool,
    /// Static credentials: the access key id (the secret comes from
    /// REMOTE_SECRET_ACCESS_KEY or --secret-access-key-file).
    #[arg(long)]
    access_key_id: Option<String>,
    #[arg(long, env = "REMOTE_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
    #[arg(long)]
    secret_access_key_file: Option<PathBuf>,
    /// Credentials from an AWS shared credentials file.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// The profile in --credentials-file or in the standard AWS chain.
    #[arg(long)]
    profile: Option<String>,
    /// Unsigned requests (a public bucket).
    #[arg(long)]
    anonymous: bool,
}

#[derive(Debug, Subcommand)]
enum RemoteAction {
    /// Pair BUCKET with a remote bucket (replacing any earlier pairing).
    Set(Box<RemoteSet>),
    /// Show every paired bucket (or one) with its mirror backlog.
    Show { bucket: Option<String> },
    /// Unpair a bucket (queued mirror work is dropped).
    Remove { bucket: String },
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// Create a key and print its id and secret.
    Create {
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys with their state and grants.
    List,
    /// Delete a key (and its grants).
    Delete { id: String },
    /// Refuse a key's requests from now on (`InvalidAccessKeyId`), keeping it.
    Disable { id: String },
    /// Accept a disabled key again.
    Enable { id: String },
    /// Let KEY use BUCKET: `read` (list, get), `write` (also put, delete) or `owner` (also
    /// configure and delete the bucket, grant others).
    Grant {
        bucket: String,
        key: String,
        grant: gateway::meta::Grant,
    },
    /// Take KEY's grant on BUCKET away.
    Revoke { bucket: String, key: String },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // s3s logs every error answer (a 404 included) at ERROR; ours are logged where they
        // are handled, so its service log is off unless asked for.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s::service=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. } | Command::Dev { .. }) {
        storage_node::daemon::tune_malloc();
    }
    init_logging();
    let result = match cli.command {
        Command::Run { config } => runtime().and_then(|rt| rt.block_on(run(config))),
        Command::Dev {
            nodes,
            data,
            listen,
            transport,
        } => runtime().and_then(|rt| {
            rt.block_on(async {
                let cancel = CancellationToken::new();
                storage_node::daemon::cancel_on_signals(cancel.clone())?;
                gateway::dev::run(
                    gateway::dev::DevOptions {
                        nodes,
                        data,
                        listen,
                        quic: transport == "quic",
                    },
                    cancel,
                )
                .await
            })
        }),
        Command::Keys { config, action } => {
            runtime().and_then(|rt| rt.block_on(keys(config, action)))
        }
        Command::Audit { config, action } => audit(config, action),
        Command::Ledger {
            config,
            from,
            to,
            node,
            format,
            statements,
            verify,
        } => match verify {
            Some(file) => verify_statements(&file),
            None => runtime()
                .and_then(|rt| rt.block_on(ledger(config, from, to, node, &format, statements))),
        },
        Command::Remote { config, action } => {
            runtime().and_then(|rt| rt.block_on(remote(config, action)))
        }
        Command::Status { config, json } => {
            runtime().and_then(|rt| rt.block_on(status(config, json)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

async fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = RawConfig::load(config.as_deref())?.validate()?;
    let gateway = Gateway::start(config).await?;
    for addr in &gateway.p2p_addrs {
        tracing::info!(%addr, "nodes can register at");
    }
    storage_node::daemon::cancel_on_signals(gateway.shutdown_token())?;
    gateway.wait().await;
    Ok(())
}

#[allow(clippy::print_stdout)] // printing is this command's job
async fn status(config: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    use storage_node::units::format_size;
    let config = RawConfig::load(config.as_deref())?.validate()?;
    let token = admin_token(&config.data_dir)?;
    let s = gateway::admin::fetch_status(config.admin_listen, &token).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let health = match &s.not_writable {
        None => "writable".to_string(),
        Some(why) => format!("NOT writable: {why}"),
    };
    println!(
        "nodes online  {} of {} ({health})\ncapacity      {} online, {} used, {} free\nbuckets       {}\ndelete queue  {} pieces\nrepair queue  {} objects, {} pieces known bad\n",
        s.nodes_online,
        s.nodes.len(),
        format_size(s.capacity_bytes),
        format_size(s.used_bytes),
        format_size(s.free_bytes),
        s.buckets,
        s.delete_queue,
        s.repair_queue,
        s.bad_pieces,
    );
    if let (Some(c), Some(age)) = (&s.segments, s.census_age_secs) {
        println!(
            "segments      {} full, {} degraded, {} repair due, {} unreadable (counted {age} s ago)\n",
            c.full, c.degraded, c.repair_due, c.unreadable
        );
    }
    for n in &s.nodes {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // Where placement puts it: the operator's domain, or the network it connects from.
        let domain = match (&n.trusted_domain, &n.network) {
            (Some(d), _) => format!("trusted {d}"),
            (None, Some(net)) => format!("stranger {net}"),
            (None, None) => "stranger (not connected)".to_string(),
        };
        println!(
            "{} {:<7} {:<12} used {:>10} of {:>10}  {domain}  claims: {}",
            n.id,
            if n.online { "online" } else { "offline" },
            n.state.as_str(),
            format_size(n.used_bytes),
            format_size(n.capacity_bytes),
            labels.join(",")
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout)] // printing is this command's job
fn audit(config: Option<PathBuf>, action: AuditAction) -> anyhow::Result<()> {
    match action {
        AuditAction::Export { node, since, out } => {
            let config = RawConfig::load(config.as_deref())?.validate()?;
            let token = admin_token(&config.data_dir)?;
            let since_ms = match since {
                None => 0,
                Some(s) => time_arg(&s).context("--since")?,
            };
            let mut path = format!("/admin/v1/audits/export?since={since_ms}");
            if let Some(node) = node {
                let node: libp2p::PeerId = node.parse().context("--node: not a node id")?;
                path.push_str(&format!("&node={node}"));
            }
            let body =
                runtime()?.block_on(gateway::admin::fetch(config.admin_listen, &token, &path))?;
            match out {
                Some(file) => {
                    std::fs::write(&file, &body)
                        .with_context(|| format!("write {}", file.display()))?;
                    eprintln!(
                        "{} audits written to {}",
                        body.lines().count(),
                        file.display()
                    );
                }
                None => print!("{body}"),
            }
        }
        AuditAction::Verify { file } => {
            let input =
                std::fs::File::open(&file).with_context(|| format!("open {}", file.display()))?;
            let total = input.metadata().map(|m| m.len()).unwrap_or(0);
            let mut shown = storage_node::progress::Progress::new();
            let r =
                gateway::audit::verify_export_from(std::io::BufReader::new(input), |n, read| {
                    shown.update(|| {
                        let pct = (read * 100).checked_div(total).unwrap_or(100);
                        format!("verifying: {n} audits, {pct}% of the file")
                    })
                })
                .with_context(|| format!("read {}", file.display()))?;
            shown.finish();
            println!(
                "{} audits: {} passes confirmed, {} failures confirmed, {} without a proof to check, {} contradicted",
                r.audits,
                r.passes_confirmed,
                r.failures_confirmed,
                r.unprovable,
                r.mismatches.len()
            );
            for (line, why) in &r.mismatches {
                println!("line {line}: {why}");
            }
            if !r.mismatches.is_empty() {
                anyhow::bail!(
                    "{} transcripts do not support their verdicts",
                    r.mismatches.len()
                );
            }
        }
    }
    Ok(())
}

/// A time on the command line: ms since the epoch, or an age (`24h`: a day ago).
fn time_arg(s: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let age = storage_node::units::parse_duration(s)
        .with_context(|| format!("{s:?} is neither ms since the epoch nor an age like 24h"))?;
    Ok(gateway::time::now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
}

#[allow(clippy::print_stdout)] // printing is this command's job
async fn ledger(
    config: Option<PathBuf>,
    from: Option<String>,
    to: Option<String>,
    node: Option<String>,
    format: &str,
    statements: bool,
) -> anyhow::Result<()> {
    use storage_node::units::format_size;
    let config = RawConfig::load(config.as_deref())?.validate()?;
    let token = admin_token(&config.data_dir)?;
    let from = from.map_or(Ok(0), |s| time_arg(&s).context("--from"))?;
    let to = to.map_or(Ok(u64::MAX), |s| time_arg(&s).context("--to"))?;
    let mut query = format!("?from={from}&to={to}");
    if let Some(node) = node {
        let node: libp2p::PeerId = node.parse().context("--node: not a node id")?;
        query.push_str(&format!("&node={node}"));
    }
    if statements {
        let path = format!("/admin/v1/ledger/statements{query}");
        print!(
            "{}",
            gateway::admin::fetch(config.admin_listen, &token, &path).await?
        );
        return Ok(());
    }
    let path = format!("/admin/v1/ledger{query}");
    let body = gateway::admin::fetch(config.admin_listen, &token, &path).await?;
    let report: gateway::ledger::Report =
        serde_json::from_str(&body).context("the gateway's ledger report does not parse")?;
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        "csv" => print!("{}", gateway::ledger::report_csv(&report)),
        "table" => {
            println!(
                "{:<52} {:>7} {:>14} {:>10} {:>10} {:>9}",
                "node", "periods", "byte-hours", "egress", "ingress", "audits"
            );
            for n in &report.nodes {
                let c = &n.credited;
                println!(
                    "{:<52} {:>3}/{:<3} {:>14.1} {:>10} {:>10} {:>4}/{:<4}",
                    n.node,
                    n.settled,
                    n.periods,
                    c.byte_hours(),
                    format_size(c.egress_bytes),
                    format_size(c.ingress_bytes),
                    c.audits_passed,
                    c.audits_passed + c.audits_failed,
                );
            }
            println!(
                "\ncredited figures of settled periods (settled/all); audits passed/judged; \
                 --format csv or json for measured and claimed figures too"
            );
        }
        other => anyhow::bail!("--format: table, csv or json, not {other:?}"),
    }
    Ok(())
}

/// Checks every statement of an export (one JSON object per line); fails if any does not
/// verify.
#[allow(clippy::print_stdout)] // printing is this command's job
fn verify_statements(file: &std::path::Path) -> anyhow::Result<()> {
    use std::io::BufRead;
    let input = std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
    let (mut good, mut bad) = (0u64, Vec::new());
    for (i, line) in std::io::BufReader::new(input).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("read {}", file.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let checked = serde_json::from_slice::<storage_node::ledger::SignedStatement>(&line)
            .map_err(|e| format!("not a statement: {e}"))
            .and_then(|s| s.verify().map_err(|e| e.to_string()));
        match checked {
            Ok(_) => good += 1,
            Err(why) => bad.push((i + 1, why)),
        }
    }
    println!("{good} statements verify, {} do not", bad.len());
    for (line, why) in &bad {
        println!("line {line}: {why}");
    }
    if !bad.is_empty() {
        anyhow::bail!("{} statements do not verify", bad.len());
    }
    Ok(())
}

/// The remote configuration the `remote set` flags describe.
fn remote_config(set: RemoteSet) -> anyhow::Result<(String, RemoteConfig)> {
    let RemoteSet {
        bucket,
        remote_bucket,
        region,
        endpoint,
        prefix,
        path_style,
        mirror,
        fallback,
        copy_in,
        tier_older_than,
        tier_larger_than,
        tier_when_free_below,
        parity,
        access_key_id,
        secret_access_key,
        secret_access_key_file,
        credentials_file,
        profile,
        anonymous,
    } = set;
    let credentials = match (access_key_id, credentials_file, anonymous) {
        (Some(id), None, false) => {
            let secret = match (secret_access_key, secret_access_key_file) {
                (_, Some(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("read {}", file.display()))?
                    .trim()
                    .to_string(),
                (Some(s), None) => s,
                (None, None) => anyhow::bail!(
                    "--access-key-id needs REMOTE_SECRET_ACCESS_KEY or --secret-access-key-file"
                ),
            };
            Credentials::Static {
                access_key_id: id,
                secret_access_key: Some(secret),
                session_token: None,
            }
        }
        (None, Some(path), false) => Credentials::File { path, profile },
        (None, None, true) => Credentials::Anonymous,
        (None, None, false) => Credentials::Environment { profile },
        _ => anyhow::bail!(
            "choose one of --access-key-id, --credentials-file and --anonymous (none: the AWS environment)"
        ),
    };
    let mirror = match mirror.as_str() {
        "off" => MirrorMode::Off,
        "async" => MirrorMode::Async,
        "sync" => MirrorMode::Sync,
        other => anyhow::bail!("--mirror: off, async or sync, not {other:?}"),
    };
    Ok((
        bucket,
        RemoteConfig {
            endpoint,
            region,
            bucket: remote_bucket,
            prefix,
            path_style,
            credentials,
            mirror,
            fallback,
            copy_in,
            tier: (tier_older_than.is_some()
                || tier_larger_than.is_some()
                || tier_when_free_below.is_some())
            .then_some(TierPolicy {
                older_than: tier_older_than,
                larger_than: tier_larger_than,
                when_free_below: tier_when_free_below,
            }),
            parity,
        },
    ))
}

#[allow(clippy::print_stdout)] // printing is this command's job
async fn remote(config: Option<PathBuf>, action: RemoteAction) -> anyhow::Result<()> {
    use gateway::admin::hybrid::{BucketRemote, RemotesReport};
    let config = RawConfig::load(config.as_deref())?.validate()?;
    let token = admin_token(&config.data_dir)?;
    let addr = config.admin_listen;
    let show = |b: &BucketRemote| {
        let r = &b.remote;
        println!(
            "{} -> {}{}/{} ({}) mirror {:?}, fallback {}{}{}{}; {} queued, lag {} s, {} failing",
            b.bucket,
            r.endpoint
                .as_deref()
                .map_or(String::new(), |e| format!("{e} ")),
            r.bucket,
            r.prefix,
            r.region,
            r.mirror,
            r.fallback,
            if r.copy_in { " with copy-in" } else { "" },
            r.tier.as_ref().map_or(String::new(), |t| format!(
                ", tier {}{}{}",
                t.older_than
                    .as_ref()
                    .map_or(String::new(), |a| format!("older than {a} ")),
                t.larger_than
                    .as_ref()
                    .map_or(String::new(), |l| format!("larger than {l} ")),
                t.when_free_below
                    .as_ref()
                    .map_or(String::new(), |f| format!("while free space < {f}")),
            )),
            if r.parity { ", parity pieces" } else { "" },
            b.backlog.queued,
            b.backlog.lag_secs,
            b.backlog.failing,
        );
    };
    match action {
        RemoteAction::Show { bucket } => {
            let body = gateway::admin::fetch(addr, &token, "/admin/v1/remotes").await?;
            let report: RemotesReport = serde_json::from_str(&body).context("parse the report")?;
            for b in report
                .buckets
                .iter()
                .filter(|b| bucket.as_ref().is_none_or(|n| *n == b.bucket))
            {
                show(b);
            }
            println!(
                "since start: {} synced, {} failed tries, {} objects tiered",
                report.synced, report.failed, report.tiered
            );
        }
        RemoteAction::Remove { bucket } => {
            let path = format!("/admin/v1/buckets/{bucket}/remote");
            let (status, body) =
                gateway::admin::request(addr, &token, "DELETE", &path, None).await?;
            if status != 200 {
                anyhow::bail!("{}", body.trim());
            }
            println!("{bucket}: remote removed");
        }
        RemoteAction::Set(set) => {
            let (bucket, remote) = remote_config(*set)?;
            let path = format!("/admin/v1/buckets/{bucket}/remote");
            let json = serde_json::to_string(&remote)?;
            let (status, body) =
                gateway::admin::request(addr, &token, "PUT", &path, Some(&json)).await?;
            if status != 200 {
                anyhow::bail!("{}", body.trim());
            }
            show(&serde_json::from_str(&body).context("parse the answer")?);
        }
    }
    Ok(())
}

fn admin_token(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let token = gateway::secrets::read_private(&data_dir.join(gateway::admin::TOKEN_FILE))
        .context("read the admin token (has the gateway been started with this data_dir?)")?;
    Ok(String::from_utf8_lossy(&token).trim().to_string())
}

#[allow(clippy::print_stdout)] // printing is this command's job
async fn keys(config: Option<PathBuf>, action: KeyAction) -> anyhow::Result<()> {
    let config = RawConfig::load(config.as_deref())?.validate()?;
    // A running gateway takes the change itself, so it holds from its next request.
    if let Ok(token) = admin_token(&config.data_dir) {
        if tokio::net::TcpStream::connect(config.admin_listen)
            .await
            .is_ok()
        {
            return keys_online(config.admin_listen, &token, action).await;
        }
    }
    let (meta, master) = open_state(&config.data_dir)
        .context("open the metadata (the gateway's admin endpoint did not answer)")?;
    match action {
        KeyAction::Create { description } => {
            let key = gateway::keys::create(&meta, &master, &description)?;
            println!("access key: {}\nsecret key: {}", key.id, key.secret);
        }
        KeyAction::List => {
            for k in gateway::admin::keys::key_infos(&meta)? {
                print_key(&k);
            }
        }
        KeyAction::Delete { id } => {
            if !meta.delete_access_key(&id)? {
                anyhow::bail!("no access key {id}");
            }
            println!("deleted {id}");
        }
        KeyAction::Disable { id } => {
            if !gateway::keys::set_disabled(&meta, &id, true)? {
                anyhow::bail!("no access key {id}");
            }
            println!("disabled {id}");
        }
        KeyAction::Enable { id } => {
            if !gateway::keys::set_disabled(&meta, &id, false)? {
                anyhow::bail!("no access key {id}");
            }
            println!("enabled {id}");
        }
        KeyAction::Grant { bucket, key, grant } => {
            if meta.access_key(&key)?.is_none() {
                anyhow::bail!("no access key {key}");
            }
            meta.set_grant(&bucket, &key, Some(grant))?;
            println!("{key} may {} {bucket}", grant.as_str());
        }
        KeyAction::Revoke { bucket, key } => {
            meta.set_grant(&bucket, &key, None)?;
            println!("{key} has no grant on {bucket}");
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_key(k: &gateway::admin::keys::KeyInfo) {
    let grants: Vec<String> = k
        .grants
        .iter()
        .map(|(b, g)| format!("{b}:{}", g.as_str()))
        .collect();
    println!(
        "{}\t{}\t{}\t{}",
        k.id,
        if k.disabled { "disabled" } else { "enabled" },
        if grants.is_empty() {
            "-".to_string()
        } else {
            grants.join(",")
        },
        k.description
    );
}

#[allow(clippy::print_stdout)]
async fn keys_online(
    addr: std::net::SocketAddr,
    token: &str,
    action: KeyAction,
) -> anyhow::Result<()> {
    let call = |method: &'static str, path: String, body: Option<String>| async move {
        let (status, text) =
            gateway::admin::request(addr, token, method, &path, body.as_deref()).await?;
        if status != 200 {
            anyhow::bail!("{}", text.trim());
        }
        anyhow::Ok(text)
    };
    match action {
        KeyAction::Create { description } => {
            let body = serde_json::json!({ "description": description }).to_string();
            let text = call("POST", "/admin/v1/keys".into(), Some(body)).await?;
            let k: gateway::admin::keys::CreatedKey =
                serde_json::from_str(&text).context("parse the answer")?;
            println!("access key: {}\nsecret key: {}", k.id, k.secret);
        }
        KeyAction::List => {
            let text = call("GET", "/admin/v1/keys".into(), None).await?;
            let keys: Vec<gateway::admin::keys::KeyInfo> =
                serde_json::from_str(&text).context("parse the answer")?;
            for k in &keys {
                print_key(k);
            }
        }
        KeyAction::Delete { id } => {
            call("DELETE", format!("/admin/v1/keys/{id}"), None).await?;
            println!("deleted {id}");
        }
        KeyAction::Disable { id } => {
            call("POST", format!("/admin/v1/keys/{id}/disable"), None).await?;
            println!("disabled {id}");
        }
        KeyAction::Enable { id } => {
            call("POST", format!("/admin/v1/keys/{id}/enable"), None).await?;
            println!("enabled {id}");
        }
        KeyAction::Grant { bucket, key, grant } => {
            let body = serde_json::json!({ "grant": grant }).to_string();
            call(
                "PUT",
                format!("/admin/v1/buckets/{bucket}/grants/{key}"),
                Some(body),
            )
            .await?;
            println!("{key} may {} {bucket}", grant.as_str());
        }
        KeyAction::Revoke { bucket, key } => {
            call(
                "DELETE",
                format!("/admin/v1/buckets/{bucket}/grants/{key}"),
                None,
            )
            .await?;
            println!("{key} has no grant on {bucket}");
        }
    }
    Ok(())
}
