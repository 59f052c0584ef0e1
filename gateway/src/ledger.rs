//! The usage ledger, gateway side: what each node did in each period (`ledger_period`, 1 h),
//! measured here, claimed by the node, and credited, in statements both sides sign.
//!
//! - **Measuring**: the [`Meter`] counts piece bytes each node sent (reads, repairs, audits'
//!   fetches are not pieces) and stored, and the audits each passed or failed (a timeout is a
//!   failure, an offline node is not audited). Every `sample` (a twelfth of the period, at most
//!   a minute) the worker adds the bytes each online node should hold (the `held` index) × the
//!   time since the last sample, and folds everything into the current period's rows, so a crash
//!   loses at most one sample.
//! - **Settling**: once a period has closed, the worker asks each of its nodes for a signed
//!   receipt of the node's running totals ([`storage_node::ledger`]); the difference from the
//!   receipt that closed the node's previous period is the node's claim. The gateway credits,
//!   per figure, the smaller of the node's signed totals and its own measured totals
//!   ([`storage_node::ledger::Statement::rule`]: on running totals, so a read counted by each
//!   side in a different period is credited once), signs the statement with its identity key,
//!   stores it, and hands the node its copy. A node that
//!   cannot be reached within another period is settled on the measurement alone; several
//!   periods waiting for the same node are settled together, the newest one carrying the
//!   receipt (the claim then spans them all).
//! - **Reporting**: [`report`] sums the rows of a time range per node
//!   (`/admin/v1/ledger`, `gateway ledger`); the statements themselves export as JSON lines and
//!   verify offline with nothing but the two peer ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chunker::manifest::NodeId;
use futures::future::BoxFuture;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use storage_node::client::{ClientError, NodeClient};
use storage_node::ledger::{SignedReceipt, SignedStatement, Statement, Usage};
use storage_node::protocol::{Request, Response};
use tokio_util::sync::CancellationToken;

use crate::config::LedgerConfig;
use crate::meta::ledger::LedgerEntry;
use crate::meta::Meta;
use crate::nodes::{node_id, peer_of, Nodes};
use crate::time::now_ms;

/// Nodes settled at once.
const CONCURRENCY: usize = 16;
/// Rows taken from a queue per pass.
const BATCH: usize = 4096;

/// Counts what nodes did, between two samples of the ledger worker.
#[derive(Debug, Default)]
pub struct Meter {
    by_node: Mutex<HashMap<PeerId, Usage>>,
}

impl Meter {
    fn with(&self, node: PeerId, f: impl FnOnce(&mut Usage)) {
        let mut map = self.by_node.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(node).or_default());
    }

    /// `node` sent `egress` piece bytes and stored `ingress`.
    pub fn traffic(&self, node: PeerId, egress: u64, ingress: u64) {
        self.with(node, |u| {
            u.egress_bytes = u.egress_bytes.saturating_add(egress);
            u.ingress_bytes = u.ingress_bytes.saturating_add(ingress);
        });
    }

    /// `node` passed or failed an audit.
    pub fn audit(&self, node: PeerId, passed: bool) {
        self.with(node, |u| {
            if passed {
                u.audits_passed += 1;
            } else {
                u.audits_failed += 1;
            }
        });
    }

    fn take(&self) -> HashMap<PeerId, Usage> {
        std::mem::take(&mut *self.by_node.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Why a ledger exchange with a node failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerNetError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("node {node} answered out of protocol: {answer}")]
    Unexpected { node: PeerId, answer: String },
}

/// The two ledger exchanges with a node, behind a trait so the worker can run without a
/// network.
pub trait LedgerNet: Send + Sync + 'static {
    /// The node's signed running totals for this gateway.
    fn receipt(&self, node: PeerId) -> BoxFuture<'_, Result<SignedReceipt, LedgerNetError>>;
    /// Hands the node its copy of a statement.
    fn deliver(
        &self,
        node: PeerId,
        statement: SignedStatement,
    ) -> BoxFuture<'_, Result<(), LedgerNetError>>;
}

fn unexpected(node: PeerId, answer: &Response) -> LedgerNetError {
    LedgerNetError::Unexpected {
        node,
        answer: format!("{answer:?}"),
    }
}

/// [`LedgerNet`] over the node protocol.
#[derive(Debug, Clone)]
pub struct Libp2pLedgerNet {
    pub client: NodeClient,
    pub timeout: Duration,
}

impl LedgerNet for Libp2pLedgerNet {
    fn receipt(&self, node: PeerId) -> BoxFuture<'_, Result<SignedReceipt, LedgerNetError>> {
        Box::pin(async move {
            match self
                .client
                .call(node, &Request::UsageReceipt, &[], self.timeout)
                .await?
            {
                (Response::UsageReceipt { receipt }, _) => Ok(*receipt),
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }

    fn deliver(
        &self,
        node: PeerId,
        statement: SignedStatement,
    ) -> BoxFuture<'_, Result<(), LedgerNetError>> {
        Box::pin(async move {
            let request = Request::RecordStatement {
                statement: Box::new(statement),
            };
            match self.client.call(node, &request, &[], self.timeout).await? {
                (Response::Recorded, _) => Ok(()),
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }
}

/// The start of the period `at_ms` falls in.
pub fn period_start(at_ms: u64, period: Duration) -> u64 {
    let len = period.as_millis().max(1) as u64;
    at_ms - at_ms % len
}

/// The ledger worker.
pub struct Ledger {
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    net: Arc<dyn LedgerNet>,
    keypair: Keypair,
    meter: Arc<Meter>,
    config: LedgerConfig,
    /// When held bytes were last accrued (`None`: not yet in this run).
    sampled_at_ms: Mutex<Option<u64>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger signing with the gateway's `keypair`, fed by `meter`.
    pub fn new(
        meta: Arc<Meta>,
        nodes: Arc<Nodes>,
        net: Arc<dyn LedgerNet>,
        keypair: Keypair,
        meter: Arc<Meter>,
        config: LedgerConfig,
    ) -> Self {
        Ledger {
            meta,
            nodes,
            net,
            keypair,
            meter,
            config,
            sampled_at_ms: Mutex::new(None),
        }
    }

    /// How often usage is sampled and closed periods settled.
    pub fn sample_interval(&self) -> Duration {
        (self.config.period / 12).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// Samples and settles every [`Ledger::sample_interval`] until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let interval = self.sample_interval();
        crate::worker::every("ledger periods settled", interval, cancel, || {
            let this = self.clone();
            async move { this.pass().await }
        })
        .await;
    }

    /// One sample, then settling and delivery. Returns how many periods were settled.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let now = now_ms();
        self.sample(now).await?;
        let settled = self.settle(now).await?;
        self.deliver().await?;
        let keep_from = now.saturating_sub(self.config.retention.as_millis() as u64);
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.ledger_prune(keep_from)).await??;
        Ok(settled)
    }

    /// Folds the meter and the bytes held since the last sample into the current period.
    async fn sample(&self, now: u64) -> anyhow::Result<()> {
        let meta = self.meta.clone();
        let held = tokio::task::spawn_blocking(move || meta.held_bytes_by_node()).await??;
        let elapsed_ms = {
            let mut at = self
                .sampled_at_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let elapsed = at.map(|then| now.saturating_sub(then));
            *at = Some(now.max(at.unwrap_or(0)));
            // A gap much longer than the interval (the gateway was stopped or stalled) is time
            // it did not observe: credit at most two intervals of it.
            let cap = 2 * self.sample_interval().as_millis() as u64;
            elapsed.map(|e| e.min(cap))
        };
        let mut usage: BTreeMap<NodeId, Usage> = self
            .meter
            .take()
            .into_iter()
            .map(|(peer, u)| (node_id(&peer), u))
            .collect();
        if let Some(elapsed_ms) = elapsed_ms {
            for (node, bytes) in held {
                // Held means available: an offline node earns no storage time. (Parity pieces
                // in a hybrid bucket's remote are held by no node, and its stand-in peer is
                // never online here.)
                let available = peer_of(&node).is_some_and(|p| {
                    self.nodes.is_online(&p) && self.nodes.remote_bucket(&p).is_none()
                });
                if !available {
                    continue;
                }
                let u = usage.entry(node).or_default();
                u.byte_seconds += u128::from(bytes) * u128::from(elapsed_ms) / 1000;
            }
        }
        usage.retain(|_, u| !u.is_zero());
        if usage.is_empty() {
            return Ok(());
        }
        let start = period_start(now, self.config.period);
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.ledger_add(start, &usage)).await??;
        Ok(())
    }

    /// Settles the periods that have closed. Returns how many.
    async fn settle(&self, now: u64) -> anyhow::Result<usize> {
        let current = period_start(now, self.config.period);
        let meta = self.meta.clone();
        let open =
            tokio::task::spawn_blocking(move || meta.ledger_unsettled(current, BATCH)).await??;
        let mut by_node: BTreeMap<NodeId, Vec<LedgerEntry>> = BTreeMap::new();
        for entry in open {
            by_node.entry(entry.node.clone()).or_default().push(entry);
        }
        let settled = futures::stream::iter(by_node)
            .map(|(node, entries)| async move {
                match self.settle_node(&node, entries, now).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(node = ?node, error = %e, "could not settle a node's ledger periods");
                        0
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .fold(0, |sum, n| async move { sum + n })
            .await;
        Ok(settled)
    }

    /// Settles one node's closed periods (oldest first). Returns how many were settled.
    async fn settle_node(
        &self,
        node: &NodeId,
        entries: Vec<LedgerEntry>,
        now: u64,
    ) -> anyhow::Result<usize> {
        let period_ms = self.config.period.as_millis() as u64;
        let me = self.keypair.public().to_peer_id();
        let mut account = self.meta.ledger_account(node)?;
        let receipt = match peer_of(node) {
            Some(peer) if self.nodes.is_online(&peer) => match self.net.receipt(peer).await {
                Ok(r) => match check_receipt(&r, peer, me, account.opening.as_ref()) {
                    Ok(()) => Some(r),
                    Err(why) => {
                        tracing::warn!(%peer, why, "refused a node's usage receipt");
                        None
                    }
                },
                Err(e) => {
                    tracing::info!(%peer, error = %e, "no usage receipt from the node yet");
                    None
                }
            },
            _ => None,
        };
        let last = entries.len() - 1;
        let mut statements = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let end = entry.period_start_ms + period_ms;
            let closing = match &receipt {
                Some(r) if i == last => Some(r.clone()),
                Some(_) => None,
                // Without a receipt, wait for one until another period has passed (the
                // entries are oldest first: the rest are newer still).
                None if now < end + period_ms => break,
                None => None,
            };
            let mut statement = Statement {
                node: node.as_bytes().to_vec(),
                gateway: me.to_bytes(),
                period_start_ms: entry.period_start_ms,
                period_end_ms: end,
                opening: closing.as_ref().and(account.opening.clone()),
                closing,
                measured: entry.row.measured,
                measured_before: account.measured_total,
                credited_before: account.credited_total,
                credited: Usage::default(),
            };
            statement.credited = statement.rule();
            account.measured_total = statement.measured_after();
            account.credited_total = statement.credited_after();
            if statement.closing.is_some() {
                account.opening.clone_from(&statement.closing);
            }
            statements.push(SignedStatement::sign(&self.keypair, statement)?);
        }
        if statements.is_empty() {
            return Ok(0);
        }
        let (meta, node2, n) = (self.meta.clone(), node.clone(), statements.len());
        tokio::task::spawn_blocking(move || meta.ledger_settle(&node2, &statements, &account))
            .await??;
        Ok(n)
    }

    /// Hands settled statements to their online nodes.
    async fn deliver(&self) -> anyhow::Result<()> {
        let meta = self.meta.clone();
        let waiting = tokio::task::spawn_blocking(move || meta.ledger_undelivered(BATCH)).await??;
        futures::stream::iter(waiting)
            .for_each_concurrent(CONCURRENCY, |entry| async move {
                let Some(statement) = entry.row.settled else {
                    return;
                };
                let done = match peer_of(&entry.node) {
                    // A node id that is no peer id can never take it.
                    None => true,
                    Some(peer) if !self.nodes.is_online(&peer) => false,
                    Some(peer) => match self.net.deliver(peer, statement).await {
                        Ok(()) => true,
                        Err(LedgerNetError::Client(ClientError::Node { kind, message, .. })) => {
                            // It refused the statement itself (not a passing failure): retrying
                            // would not change its answer.
                            tracing::warn!(%peer, ?kind, message, "the node refused a ledger statement");
                            true
                        }
                        Err(e) => {
                            tracing::info!(%peer, error = %e, "ledger statement not delivered yet");
                            false
                        }
                    },
                };
                if done {
                    if let Err(e) = self.meta.ledger_delivered(entry.period_start_ms, &entry.node)
                    {
                        tracing::warn!(error = %e, "could not record a delivered statement");
                    }
                }
            })
            .await;
        Ok(())
    }
}

/// Checks a node's receipt before it closes a claim: signed by that node, for this gateway,
/// not older than the receipt that opens the claim.
fn check_receipt(
    receipt: &SignedReceipt,
    node: PeerId,
    gateway: PeerId,
    opening: Option<&SignedReceipt>,
) -> Result<(), &'static str> {
    match receipt.verify() {
        Ok(parties) if parties == (node, gateway) => {}
        Ok(_) => return Err("the receipt names another node or gateway"),
        Err(_) => return Err("the receipt's signature does not verify"),
    }
    if opening.is_some_and(|o| receipt.receipt.at_ms < o.receipt.at_ms) {
        return Err("the receipt is older than the node's previous one");
    }
    Ok(())
}

/// One node's figures over a report's range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    /// Periods with any usage in the range.
    pub periods: u64,
    /// Of those, settled (a signed statement exists).
    pub settled: u64,
    /// Of those, settled with a receipt the node signed.
    pub receipts: u64,
    /// What the gateway measured, every period.
    pub measured: Usage,
    /// What the node claimed, periods with receipts.
    pub claimed: Usage,
    /// What the gateway credits, settled periods.
    pub credited: Usage,
}

/// The ledger over `[from_ms, to_ms)`: per node, in node order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub from_ms: u64,
    pub to_ms: u64,
    pub nodes: Vec<NodeReport>,
}

/// Sums the ledger's rows of the periods starting in `[from_ms, to_ms)` per node.
pub fn report(meta: &Meta, from_ms: u64, to_ms: u64) -> Result<Report, crate::meta::MetaError> {
    let mut nodes: BTreeMap<String, NodeReport> = BTreeMap::new();
    meta.ledger_rows(from_ms, to_ms, |entry| {
        let name = peer_of(&entry.node).map_or_else(
            || crate::digest::hex(entry.node.as_bytes()),
            |p| p.to_string(),
        );
        let r = nodes.entry(name.clone()).or_insert_with(|| NodeReport {
            node: name,
            ..NodeReport::default()
        });
        r.periods += 1;
        r.measured.add(&entry.row.measured);
        if let Some(s) = &entry.row.settled {
            r.settled += 1;
            r.credited.add(&s.statement.credited);
            if let Some(claimed) = s.statement.claimed() {
                r.receipts += 1;
                r.claimed.add(&claimed);
            }
        }
        true
    })?;
    Ok(Report {
        from_ms,
        to_ms,
        nodes: nodes.into_values().collect(),
    })
}

/// The report as CSV: a header line, then one line per node; each of the credited, measured
/// and claimed groups has the same five figures.
pub fn report_csv(report: &Report) -> String {
    let header = |group: &str| {
        [
            "byte_hours",
            "egress_bytes",
            "ingress_bytes",
            "audits_passed",
            "audits_failed",
        ]
        .map(|f| format!("{group}_{f}"))
        .join(",")
    };
    let mut out = format!(
        "node,periods,settled,receipts,{},{},{}\n",
        header("credited"),
        header("measured"),
        header("claimed"),
    );
    let group = |u: &Usage| {
        format!(
            "{:.3},{},{},{},{}",
            u.byte_hours(),
            u.egress_bytes,
            u.ingress_bytes,
            u.audits_passed,
            u.audits_failed
        )
    };
    for n in &report.nodes {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            n.node,
            n.periods,
            n.settled,
            n.receipts,
            group(&n.credited),
            group(&n.measured),
            group(&n.claimed),
        ));
    }
    out
}

/// Every settled statement of the periods starting in `[from_ms, to_ms)` (of `node` only, if
/// given), up to `limit`, in period order.
pub fn statements(
    meta: &Meta,
    from_ms: u64,
    to_ms: u64,
    node: Option<&NodeId>,
    limit: usize,
) -> Result<Vec<SignedStatement>, crate::meta::MetaError> {
    let mut out = Vec::new();
    meta.ledger_rows(from_ms, to_ms, |entry| {
        if node.is_none_or(|n| *n == entry.node) {
            if let Some(s) = entry.row.settled {
                out.push(s);
            }
        }
        out.len() < limit
    })?;
    Ok(out)
}
