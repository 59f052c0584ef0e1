//! The gateway's configuration: a TOML file, then `GATEWAY_*` environment variables on top.
//!
//! Two stages, as in the node: [`RawConfig`] is what serde reads (strings with units, documented
//! defaults); [`RawConfig::validate`] turns it into a [`Config`] of real types or names the field
//! that is wrong. Every field can be overridden by an environment variable named after it:
//! `GATEWAY_` + the field name in capitals (`GATEWAY_S3_LISTEN=127.0.0.1:9000`,
//! `GATEWAY_HEARTBEAT=2s`); list fields take comma-separated values. `gateway dev` passes the
//! variables it was started with on to the gateway it runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use chunker::Params;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use storage_node::units::{parse_duration, parse_size};

use crate::audit::AuditConfig;
use crate::gc::GcConfig;
use crate::mirror::MirrorConfig;
use crate::nodes::Admission;
use crate::placement::Rules;
use crate::repair::RepairConfig;
use crate::reputation::Policy;
use crate::serve::Limits;

/// Connections the admin port holds at once (a quarter of them from one address): it serves
/// operators and monitoring, not crowds.
const ADMIN_CONNECTIONS: usize = 256;

/// Prefix of the environment variables that override fields.
pub const ENV_PREFIX: &str = "GATEWAY_";

/// The configuration file as written. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Directory for the metadata database, the master key and the gateway's identity.
    pub data_dir: String,
    /// Where S3 clients connect.
    pub s3_listen: String,
    /// Where `/health` (and later the admin API and `/metrics`) is served.
    pub admin_listen: String,
    /// libp2p addresses nodes dial to register.
    pub p2p_listen: Vec<String>,
    /// Where nodes dial their data lanes (TCP; the port is told to nodes when they register).
    /// Empty: no lanes, pieces travel on libp2p streams.
    pub lane_listen: String,
    /// Data lanes each node keeps to this gateway (1 ..= 16): the exchanges it can run at
    /// once without the muxer.
    pub lanes_per_node: u8,
    /// The region reported to S3 clients (and checked in their signatures' scope).
    pub region: String,
    /// Data pieces per segment.
    pub data_pieces: usize,
    /// Parity pieces per segment: any `parity_pieces` nodes of a segment may be lost.
    pub parity_pieces: usize,
    /// Size of one piece; a segment holds about `data_pieces × piece_size` bytes.
    pub piece_size: String,
    /// Objects up to this size live inside the metadata instead of on nodes.
    pub inline_threshold: String,
    /// Pieces of a segment that must be stored before the upload moves on (`k + 1 ..= k + m`;
    /// 0 means all `k + m`).
    pub write_quorum: usize,
    /// Once the quorum is reached, how long the remaining pieces may still take.
    pub write_grace: String,
    /// Deadline of one piece transfer with a node.
    pub node_timeout: String,
    /// A segment read taking longer than this also asks the parity pieces' nodes (hedging).
    pub hedge_after: String,
    /// An upload whose body sends nothing for this long is cut off (`RequestTimeout`).
    pub body_timeout: String,
    /// How often nodes re-register; a node silent for three heartbeats is offline.
    pub heartbeat: String,
    /// Node ids allowed to register. Empty: any node with a valid identity may join.
    pub allowed_nodes: Vec<String>,
    /// Nodes the operator vouches for, as `<node id>=<failure domain>` (e.g.
    /// `12D3KooW…=home/rack1`): their domains are believed and spread over. Every other node is a
    /// stranger, placed by the network its connection comes from.
    pub trusted_nodes: Vec<String>,
    /// Most pieces of one segment on strangers in one observed network (/24 of IPv4, /48 of
    /// IPv6).
    pub max_pieces_per_network: usize,
    /// Share of new segments in which one stranger still in vetting gets a piece (0 ..= 1).
    pub unvetted_share: f64,
    /// S3 requests served at once; more get `SlowDown`.
    pub max_requests: usize,
    /// Connections the S3 port holds open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections the S3 port holds open at once from one client address.
    pub max_connections_per_client: usize,
    /// Time a client has to send a request head, which is also how long an idle keep-alive
    /// connection may wait for its next request (S3 and admin ports).
    pub header_timeout: String,
    /// How often the delete queue is pushed to nodes.
    pub gc_interval: String,
    /// How long the pieces of an overwritten, deleted, repaired or tiered object stay on their
    /// nodes, so reads that began before the change can finish (0s: deleted at the next pass).
    pub delete_grace: String,
    /// Multipart uploads neither completed nor aborted within this time are aborted.
    pub upload_ttl: String,
    /// Every node is challenged at least once per interval.
    pub audit_interval: String,
    /// How long a node has to answer a challenge.
    pub audit_deadline: String,
    /// Random 1 KiB chunks asked for per challenge.
    pub audit_chunks: usize,
    /// Audit transcripts are kept this long (about 16 MB per node per day at the defaults).
    pub audit_retention: String,
    /// Forgetting factor of the audit and online scores (memory ≈ 1 / (1 − λ) audits).
    pub reputation_lambda: f64,
    /// A node whose audit score falls below this is disqualified.
    pub disqualify_below: f64,
    /// A node whose online score falls below this is suspended (no new pieces).
    pub suspend_below: f64,
    /// Audits a new node must pass before it gets a full share of new pieces.
    pub vetting_audits: u32,
    /// A node offline without a break for this long is disqualified.
    pub offline_disqualify: String,
    /// A node offline this long has its pieces repaired elsewhere.
    pub offline_grace: String,
    /// A segment with fewer than `data_pieces + repair_margin` healthy pieces is repaired.
    pub repair_margin: usize,
    /// How often the repair queue is worked through.
    pub repair_interval: String,
    /// Most bytes per second the repairer moves (fetched plus placed).
    pub repair_rate: String,
    /// How often the mirror queue is worked through (hybrid buckets).
    pub mirror_interval: String,
    /// Objects copied to remotes at once.
    pub mirror_concurrency: usize,
    /// How often tiered buckets are looked through for objects to move to their remote.
    pub tier_interval: String,
    /// How often every segment is counted by health (`gateway_segments`).
    pub census_interval: String,
    /// Length of a usage-ledger period: each node's usage is settled (receipt, statement) once
    /// per period.
    pub ledger_period: String,
    /// How long settled ledger periods are kept.
    pub ledger_retention: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            data_dir: "./data/gateway".into(),
            s3_listen: "127.0.0.1:9000".into(),
            admin_listen: "127.0.0.1:9001".into(),
            p2p_listen: vec!["/ip4/0.0.0.0/tcp/9010".into()],
            lane_listen: "0.0.0.0:9011".into(),
            lanes_per_node: 16,
            region: "us-east-1".into(),
            data_pieces: 4,
            parity_pieces: 2,
            piece_size: "1MiB".into(),
            inline_threshold: "4KiB".into(),
            write_quorum: 0,
            write_grace: "2s".into(),
            node_timeout: "30s".into(),
            hedge_after: "500ms".into(),
            body_timeout: "30s".into(),
            heartbeat: "10s".into(),
            allowed_nodes: Vec::new(),
            trusted_nodes: Vec::new(),
            max_pieces_per_network: 1,
            unvetted_share: 0.05,
            max_requests: 64,
            max_connections: 4096,
            max_connections_per_client: 512,
            header_timeout: "20s".into(),
            gc_interval: "10s".into(),
            delete_grace: "5m".into(),
            upload_ttl: "7d".into(),
            audit_interval: "30s".into(),
            audit_deadline: "10s".into(),
            audit_chunks: 4,
            audit_retention: "3d".into(),
            reputation_lambda: 0.99,
            disqualify_below: 0.96,
            suspend_below: 0.6,
            vetting_audits: 10,
            offline_disqualify: "7d".into(),
            offline_grace: "1h".into(),
            repair_margin: 2,
            repair_interval: "10s".into(),
            repair_rate: "64MiB".into(),
            mirror_interval: "1s".into(),
            mirror_concurrency: 4,
            tier_interval: "1m".into(),
            census_interval: "1m".into(),
            ledger_period: "1h".into(),
            ledger_retention: "400d".into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub s3_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub p2p_listen: Vec<Multiaddr>,
    pub lane_listen: Option<SocketAddr>,
    pub lanes_per_node: u8,
    pub region: String,
    pub params: Params,
    pub inline_threshold: u64,
    pub write_quorum: usize,
    pub write_grace: Duration,
    pub node_timeout: Duration,
    pub hedge_after: Duration,
    pub body_timeout: Duration,
    pub heartbeat: Duration,
    pub admission: Admission,
    pub max_requests: usize,
    pub s3_limits: Limits,
    pub admin_limits: Limits,
    pub gc: GcConfig,
    pub audit: AuditConfig,
    pub policy: Policy,
    pub repair: RepairConfig,
    pub mirror: MirrorConfig,
    pub tier_interval: Duration,
    pub census_interval: Duration,
    pub ledger: LedgerConfig,
}

/// The usage ledger's settings (see [`crate::ledger`]).
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub period: Duration,
    pub retention: Duration,
}

impl RawConfig {
    /// Reads a TOML file (a missing `path` gives the defaults), then applies the `GATEWAY_*`
    /// environment variables.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("parse {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, std::env::vars())?;
        toml::Value::Table(table)
            .try_into()
            .context("configuration (file and GATEWAY_* variables)")
    }

    /// Checks every field and converts it to its real type.
    pub fn validate(&self) -> anyhow::Result<Config> {
        let params = Params::new(
            self.data_pieces,
            self.parity_pieces,
            parse_size(&self.piece_size).context("piece_size")?,
        )
        .context("data_pieces, parity_pieces, piece_size")?;
        if params.m() == 0 {
            bail!("parity_pieces: at least 1, or no node may ever be lost");
        }
        let total = params.total();
        let write_quorum = match self.write_quorum {
            0 => total,
            q if q > params.k() && q <= total => q,
            q => bail!(
                "write_quorum: {q} is outside {} ..= {total} (or 0 for all pieces)",
                params.k() + 1
            ),
        };
        let inline_threshold = parse_size(&self.inline_threshold).context("inline_threshold")?;
        if inline_threshold > 1 << 20 {
            bail!("inline_threshold: at most 1MiB (inline bodies live in the metadata)");
        }
        let addr = |field: &str, s: &str| -> anyhow::Result<SocketAddr> {
            s.parse()
                .with_context(|| format!("{field}: {s:?} is not ip:port"))
        };
        let duration = |field: &str, s: &str| -> anyhow::Result<Duration> {
            let d = parse_duration(s).with_context(|| field.to_string())?;
            if d.is_zero() {
                bail!("{field}: must be longer than 0");
            }
            Ok(d)
        };
        if self.max_requests == 0 {
            bail!("max_requests: at least 1");
        }
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            bail!("max_connections, max_connections_per_client: at least 1");
        }
        if !(1..=storage_node::protocol::MAX_LANES).contains(&self.lanes_per_node) {
            bail!(
                "lanes_per_node: 1 ..= {}",
                storage_node::protocol::MAX_LANES
            );
        }
        if !(1..=chunker::proof::MAX_CHALLENGE_CHUNKS).contains(&self.audit_chunks) {
            bail!(
                "audit_chunks: 1 ..= {}",
                chunker::proof::MAX_CHALLENGE_CHUNKS
            );
        }
        if !(self.reputation_lambda > 0.0 && self.reputation_lambda < 1.0) {
            bail!("reputation_lambda: strictly between 0 and 1");
        }
        for (field, v) in [
            ("disqualify_below", self.disqualify_below),
            ("suspend_below", self.suspend_below),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{field}: between 0 and 1");
            }
        }
        if self.repair_margin == 0 || self.repair_margin > params.m() {
            bail!(
                "repair_margin: 1 ..= parity_pieces ({}); 0 would wait until a segment has no \
                 redundancy left",
                params.m()
            );
        }
        let repair_rate = parse_size(&self.repair_rate).context("repair_rate")?;
        if repair_rate == 0 {
            bail!("repair_rate: more than 0 bytes per second");
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(Config {
            data_dir: PathBuf::from(&self.data_dir),
            s3_listen: addr("s3_listen", &self.s3_listen)?,
            admin_listen: addr("admin_listen", &self.admin_listen)?,
            p2p_listen: self
                .p2p_listen
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("p2p_listen: {a:?} is not a multiaddr"))
                })
                .collect::<anyhow::Result<_>>()?,
            lane_listen: match self.lane_listen.as_str() {
                "" => None,
                a => Some(addr("lane_listen", a)?),
            },
            lanes_per_node: self.lanes_per_node,
            region: self.region.clone(),
            params,
            inline_threshold,
            write_quorum,
            write_grace: parse_duration(&self.write_grace).context("write_grace")?,
            node_timeout: duration("node_timeout", &self.node_timeout)?,
            hedge_after: duration("hedge_after", &self.hedge_after)?,
            body_timeout: duration("body_timeout", &self.body_timeout)?,
            heartbeat: duration("heartbeat", &self.heartbeat)?,
            admission: self.admission()?,
            max_requests: self.max_requests,
            s3_limits: Limits {
                connections: self.max_connections,
                per_address: self.max_connections_per_client,
                header_timeout: duration("header_timeout", &self.header_timeout)?,
            },
            admin_limits: Limits {
                connections: ADMIN_CONNECTIONS,
                per_address: ADMIN_CONNECTIONS / 4,
                header_timeout: duration("header_timeout", &self.header_timeout)?,
            },
            gc: GcConfig {
                interval: duration("gc_interval", &self.gc_interval)?,
                upload_ttl: duration("upload_ttl", &self.upload_ttl)?,
                grace: parse_duration(&self.delete_grace).context("delete_grace")?,
            },
            audit: AuditConfig {
                interval: duration("audit_interval", &self.audit_interval)?,
                deadline: duration("audit_deadline", &self.audit_deadline)?,
                chunks: self.audit_chunks,
                retention: duration("audit_retention", &self.audit_retention)?,
            },
            policy: Policy {
                lambda: self.reputation_lambda,
                disqualify_below: self.disqualify_below,
                suspend_below: self.suspend_below,
                vetting_audits: self.vetting_audits,
                offline_disqualify_ms: ms(duration(
                    "offline_disqualify",
                    &self.offline_disqualify,
                )?),
            },
            repair: RepairConfig {
                margin: self.repair_margin,
                offline_grace: duration("offline_grace", &self.offline_grace)?,
                interval: duration("repair_interval", &self.repair_interval)?,
                rate: repair_rate,
            },
            mirror: MirrorConfig {
                interval: duration("mirror_interval", &self.mirror_interval)?,
                concurrency: match self.mirror_concurrency {
                    0 => bail!("mirror_concurrency: at least 1"),
                    n => n.min(256),
                },
            },
            tier_interval: duration("tier_interval", &self.tier_interval)?,
            census_interval: duration("census_interval", &self.census_interval)?,
            ledger: {
                let period = duration("ledger_period", &self.ledger_period)?;
                let retention = duration("ledger_retention", &self.ledger_retention)?;
                if period < Duration::from_secs(1) {
                    bail!("ledger_period: at least 1s");
                }
                if retention < period {
                    bail!("ledger_retention: at least one ledger_period");
                }
                LedgerConfig { period, retention }
            },
        })
    }

    fn admission(&self) -> anyhow::Result<Admission> {
        let allowed = self
            .allowed_nodes
            .iter()
            .map(|n| {
                n.parse()
                    .with_context(|| format!("allowed_nodes: {n:?} is not a node id"))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut trusted = BTreeMap::new();
        for entry in &self.trusted_nodes {
            let Some((id, domain)) = entry.split_once('=') else {
                bail!("trusted_nodes: {entry:?} is not <node id>=<failure domain>");
            };
            let peer: PeerId = id
                .trim()
                .parse()
                .with_context(|| format!("trusted_nodes: {id:?} is not a node id"))?;
            let domain = domain.trim();
            if domain.is_empty() {
                bail!("trusted_nodes: {entry:?} names no failure domain");
            }
            trusted.insert(peer, domain.to_string());
        }
        if self.max_pieces_per_network == 0 {
            bail!("max_pieces_per_network: at least 1");
        }
        if !(0.0..=1.0).contains(&self.unvetted_share) {
            bail!("unvetted_share: between 0 and 1");
        }
        Ok(Admission {
            allowed,
            trusted,
            rules: Rules {
                per_network: self.max_pieces_per_network,
                unvetted_share: self.unvetted_share,
            },
        })
    }

    /// The file's text, with a header.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let body = toml::to_string_pretty(self).context("serialize the configuration")?;
        Ok(format!(
            "# gateway configuration. Every field is documented in docs/gateway.md;\n\
             # GATEWAY_<FIELD> environment variables override it.\n\n{body}"
        ))
    }
}

/// Overlays `GATEWAY_<FIELD>` variables onto `table`, typed like the field's default.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = toml::Table::try_from(RawConfig::default()).context("default configuration")?;
    for (name, value) in vars {
        let Some(field) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let field = field.to_ascii_lowercase();
        let Some(default) = defaults.get(&field) else {
            continue; // other GATEWAY_* variables (e.g. for tests) are not ours
        };
        let parsed = match default {
            toml::Value::Integer(_) => toml::Value::Integer(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}: {value:?} is not a whole number"))?,
            ),
            toml::Value::Float(_) => toml::Value::Float(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}: {value:?} is not a number"))?,
            ),
            toml::Value::Array(_) => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            ),
            _ => toml::Value::String(value),
        };
        table.insert(field, parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!((c.params.k(), c.params.m()), (4, 2));
        assert_eq!(c.write_quorum, 6);
        assert_eq!(c.inline_threshold, 4096);
    }

    #[test]
    fn environment_overrides_fields_by_type() {
        let mut table = toml::Table::new();
        let vars = [
            ("GATEWAY_HEARTBEAT", "2s"),
            ("GATEWAY_DATA_PIECES", "3"),
            ("GATEWAY_DISQUALIFY_BELOW", "0.9"),
            ("GATEWAY_ALLOWED_NODES", "a, b"),
            ("GATEWAY_NOT_A_FIELD", "x"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut table, vars.into_iter()).unwrap();
        let raw: RawConfig = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(raw.heartbeat, "2s");
        assert_eq!(raw.data_pieces, 3);
        assert_eq!(raw.disqualify_below, 0.9);
        assert_eq!(raw.allowed_nodes, ["a", "b"]);
        let bad = [("GATEWAY_DATA_PIECES".to_string(), "four".to_string())];
        assert!(apply_env(&mut toml::Table::new(), bad.into_iter()).is_err());
    }

    #[test]
    fn bad_fields_are_named() {
        type Breaker = fn(&mut RawConfig);
        let cases: [(Breaker, &str); 13] = [
            (|c| c.trusted_nodes = vec!["nope".into()], "trusted_nodes"),
            (|c| c.trusted_nodes = vec!["nope=a".into()], "trusted_nodes"),
            (|c| c.max_pieces_per_network = 0, "max_pieces_per_network"),
            (|c| c.unvetted_share = 1.5, "unvetted_share"),
            (|c| c.repair_margin = 3, "repair_margin"),
            (|c| c.reputation_lambda = 1.0, "reputation_lambda"),
            (|c| c.write_quorum = 4, "write_quorum"),
            (|c| c.parity_pieces = 0, "parity_pieces"),
            (|c| c.s3_listen = "nowhere".into(), "s3_listen"),
            (|c| c.heartbeat = "0s".into(), "heartbeat"),
            (|c| c.lane_listen = "9011".into(), "lane_listen"),
            (|c| c.lanes_per_node = 0, "lanes_per_node"),
            (|c| c.lanes_per_node = 17, "lanes_per_node"),
        ];
        for (break_it, field) in cases {
            let mut raw = RawConfig::default();
            break_it(&mut raw);
            let err = format!("{:#}", raw.validate().unwrap_err());
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn trusted_nodes_name_a_node_and_a_domain() {
        let id = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp";
        let raw = RawConfig {
            trusted_nodes: vec![format!("{id} = home/rack1")],
            ..RawConfig::default()
        };
        let c = raw.validate().unwrap();
        let peer: PeerId = id.parse().unwrap();
        assert_eq!(
            c.admission.trusted.get(&peer).map(String::as_str),
            Some("home/rack1")
        );
        assert_eq!(c.admission.rules, Rules::default());
        let raw = RawConfig {
            trusted_nodes: vec![format!("{id}=")],
            ..RawConfig::default()
        };
        assert!(raw.validate().is_err());
    }

    #[test]
    fn the_example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let raw: RawConfig = toml::from_str(&text).unwrap();
        raw.validate().unwrap();
    }
}
