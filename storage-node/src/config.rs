//! The node's configuration: `<data-dir>/node.toml`, written by `storage-node init`, read by
//! `run`, with environment and flag overrides applied on top.
//!
//! Two stages: [`RawConfig`] is the file as serde sees it (strings with units, documented
//! defaults); [`RawConfig::validate`] turns it into a [`Config`] of real types or says exactly
//! which field is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::units::{parse_duration, parse_size};

/// File name of the configuration inside the data directory.
pub const CONFIG_FILE: &str = "node.toml";

/// The configuration file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Bytes of pieces this node may hold, e.g. `"500GiB"`.
    pub capacity: String,
    /// Gateways to register with and take orders from: multiaddrs ending in `/p2p/<peer id>`.
    pub gateways: Vec<String>,
    /// Addresses to listen on for gateways that can dial in. Empty: only dial out (behind NAT).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Failure-domain labels reported to the gateways (`region`, `zone`, `operator`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where `/metrics` and `/health` are served. Default `127.0.0.1:9101`.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// How many bytes per second the background scrub re-hashes. Default `16MiB`.
    #[serde(default = "default_scrub_rate")]
    pub scrub_rate: String,
    /// Pause between two full scrub passes. Default `24h`.
    #[serde(default = "default_scrub_interval")]
    pub scrub_interval: String,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9101".into()
}

fn default_scrub_rate() -> String {
    "16MiB".into()
}

fn default_scrub_interval() -> String {
    "24h".into()
}

/// A gateway the node serves: where to dial it and the identity it must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddr {
    pub addr: Multiaddr,
    pub peer: PeerId,
}

impl std::str::FromStr for GatewayAddr {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let addr: Multiaddr = s
            .parse()
            .with_context(|| format!("{s:?} is not a multiaddr"))?;
        match addr.iter().last() {
            Some(Protocol::P2p(peer)) => Ok(GatewayAddr { addr, peer }),
            _ => bail!("gateway address {s:?} must end in /p2p/<gateway peer id>"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub capacity: u64,
    pub gateways: Vec<GatewayAddr>,
    pub listen: Vec<Multiaddr>,
    pub labels: BTreeMap<String, String>,
    pub metrics_listen: SocketAddr,
    pub scrub_rate: u64,
    pub scrub_interval: Duration,
}

impl RawConfig {
    /// Checks every field and converts it to its real type.
    pub fn validate(&self, data_dir: &Path) -> anyhow::Result<Config> {
        let capacity = parse_size(&self.capacity).context("capacity")?;
        if capacity == 0 {
            bail!("capacity: must be more than 0 bytes");
        }
        if self.gateways.is_empty() {
            bail!("gateways: name at least one gateway to serve");
        }
        let gateways = self
            .gateways
            .iter()
            .map(|g| g.parse())
            .collect::<anyhow::Result<Vec<GatewayAddr>>>()
            .context("gateways")?;
        let listen = self
            .listen
            .iter()
            .map(|l| {
                l.parse()
                    .with_context(|| format!("listen: {l:?} is not a multiaddr"))
            })
            .collect::<anyhow::Result<Vec<Multiaddr>>>()?;
        if self.labels.len() > crate::protocol::MAX_LABELS {
            bail!("labels: at most {} labels", crate::protocol::MAX_LABELS);
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 128 || v.len() > 128 {
                bail!("labels: {k:?} = {v:?}: keys are 1 to 128 bytes, values at most 128");
            }
        }
        let metrics_listen = self
            .metrics_listen
            .parse()
            .with_context(|| format!("metrics_listen: {:?} is not ip:port", self.metrics_listen))?;
        let scrub_rate =
            parse_size(self.scrub_rate.trim_end_matches("/s")).context("scrub_rate")?;
        let scrub_interval = parse_duration(&self.scrub_interval).context("scrub_interval")?;
        Ok(Config {
            data_dir: data_dir.to_path_buf(),
            capacity,
            gateways,
            listen,
            labels: self.labels.clone(),
            metrics_listen,
            scrub_rate,
            scrub_interval,
        })
    }

    /// Reads `<data_dir>/node.toml`.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(CONFIG_FILE);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// The file's text, with a header saying what it is.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let body = toml::to_string_pretty(self).context("serialize the configuration")?;
        Ok(format!(
            "# storage-node configuration, written by `storage-node init`.\n\
             # Every field is documented in docs/storage-node.md.\n\n{body}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str =
        "/ip4/127.0.0.1/tcp/7000/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK";

    fn raw() -> RawConfig {
        RawConfig {
            capacity: "500GiB".into(),
            gateways: vec![GATEWAY.into()],
            listen: vec!["/ip4/0.0.0.0/tcp/4001".into()],
            labels: BTreeMap::from([("region".into(), "eu-west".into())]),
            metrics_listen: default_metrics_listen(),
            scrub_rate: "16MiB/s".into(),
            scrub_interval: default_scrub_interval(),
        }
    }

    #[test]
    fn a_written_config_reads_back_and_validates() {
        let text = raw().to_toml().unwrap();
        let back: RawConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, raw());
        let c = back.validate(Path::new("/data")).unwrap();
        assert_eq!(c.capacity, 500 << 30);
        assert_eq!(
            c.gateways[0].peer.to_string(),
            GATEWAY.rsplit('/').next().unwrap()
        );
        assert_eq!(c.scrub_rate, 16 << 20);
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../node.example.toml");
        let raw: RawConfig = toml::from_str(text).unwrap();
        raw.validate(Path::new("/data")).unwrap();
    }

    #[test]
    fn minimal_files_get_defaults() {
        let text = format!("capacity = \"1TB\"\ngateways = [\"{GATEWAY}\"]\n");
        let c = toml::from_str::<RawConfig>(&text)
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap();
        assert!(c.listen.is_empty());
        assert_eq!(c.scrub_interval, Duration::from_secs(86400));
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(RawConfig, &str)> = vec![
            (
                RawConfig {
                    capacity: "lots".into(),
                    ..raw()
                },
                "capacity",
            ),
            (
                RawConfig {
                    capacity: "0".into(),
                    ..raw()
                },
                "capacity",
            ),
            (
                RawConfig {
                    gateways: vec![],
                    ..raw()
                },
                "gateways",
            ),
            (
                RawConfig {
                    gateways: vec!["/ip4/1.2.3.4/tcp/1".into()],
                    ..raw()
                },
                "gateways",
            ),
            (
                RawConfig {
                    listen: vec!["nowhere".into()],
                    ..raw()
                },
                "listen",
            ),
            (
                RawConfig {
                    metrics_listen: "9101".into(),
                    ..raw()
                },
                "metrics_listen",
            ),
            (
                RawConfig {
                    scrub_interval: "often".into(),
                    ..raw()
                },
                "scrub_interval",
            ),
        ];
        for (cfg, field) in cases {
            let err = format!("{:#}", cfg.validate(Path::new("/d")).unwrap_err());
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(
            toml::from_str::<RawConfig>("capacity = \"1GB\"\ngateways = []\ntypo = 1\n").is_err()
        );
    }
}
