//! The tables behind the usage ledger (see [`crate::ledger`]), all in the `ledger` column family,
//! told apart by their first byte:
//!
//! - `R ‖ period start (u64 BE) ‖ node` → [`LedgerRow`]: what the gateway measured of a node in a
//!   period and, once settled, the statement it signed. Period-first keys make a report over a
//!   time range one contiguous scan and pruning one range delete.
//! - `U ‖ period start ‖ node` → (): rows not settled yet; `D ‖ period start ‖ node` → (): settled
//!   rows whose statement the node has not acknowledged yet. Both small, so the worker never
//!   scans the settled history.
//! - `O ‖ node` → [`LedgerAccount`]: the node's running totals as of its last settled period
//!   and the receipt that closed its last claim (the opening of the next).

use std::collections::BTreeMap;

use chunker::manifest::NodeId;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use storage_node::ledger::{SignedReceipt, SignedStatement, Usage};

use super::{decode, encode, node_prefix, split_node_prefix, Meta, MetaError};

pub(super) const CF_LEDGER: &str = "ledger";
const ROW: u8 = b'R';
const UNSETTLED: u8 = b'U';
const UNDELIVERED: u8 = b'D';
const OPENING: u8 = b'O';

/// A node's account for one period, as the gateway keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    /// What the gateway measured so far.
    pub measured: Usage,
    /// The statement, once the period is settled.
    pub settled: Option<SignedStatement>,
}

/// A node's running totals as of its last settled period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerAccount {
    /// The node's receipt that closed its last claim.
    pub opening: Option<SignedReceipt>,
    /// Everything the gateway measured of the node in settled periods.
    pub measured_total: Usage,
    /// Everything it credited.
    pub credited_total: Usage,
}

/// One row with its key's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub period_start_ms: u64,
    pub node: NodeId,
    pub row: LedgerRow,
}

fn period_key(tag: u8, period_start_ms: u64, node: &NodeId) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(&period_start_ms.to_be_bytes());
    k.extend_from_slice(&node_prefix(node));
    k
}

fn parse_period_key(key: &[u8]) -> Option<(u64, NodeId)> {
    let period: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    match split_node_prefix(key.get(9..)?)? {
        (node, []) => Some((u64::from_be_bytes(period), node)),
        _ => None,
    }
}

fn opening_key(node: &NodeId) -> Vec<u8> {
    let mut k = vec![OPENING];
    k.extend_from_slice(&node_prefix(node));
    k
}

impl Meta {
    /// Adds `usage` to each node's row of the period starting at `period_start_ms` (creating
    /// rows as needed) in one write. A row already settled is left alone: its statement is
    /// signed (a late measurement is dropped, and logged).
    pub fn ledger_add(
        &self,
        period_start_ms: u64,
        usage: &BTreeMap<NodeId, Usage>,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        let cf = self.cf(CF_LEDGER);
        let mut batch = WriteBatch::default();
        for (node, add) in usage {
            let key = period_key(ROW, period_start_ms, node);
            let mut row: LedgerRow = match self.db.get_cf(cf, &key)? {
                Some(bytes) => decode("ledger row", &bytes)?,
                None => {
                    batch.put_cf(cf, period_key(UNSETTLED, period_start_ms, node), []);
                    LedgerRow::default()
                }
            };
            if row.settled.is_some() {
                tracing::warn!(node = ?node, period_start_ms, "usage measured after its period was settled; dropped");
                continue;
            }
            row.measured.add(add);
            batch.put_cf(cf, key, encode(&row));
        }
        self.write(batch)
    }

    fn ledger_scan(
        &self,
        tag: u8,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NodeId)>, MetaError> {
        let cf = self.cf(CF_LEDGER);
        let mut out = Vec::new();
        let from = [tag];
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, _) = item?;
            if key.first() != Some(&tag) || out.len() >= limit {
                break;
            }
            let Some((period, node)) = parse_period_key(&key) else {
                continue;
            };
            if period >= before_ms {
                break;
            }
            out.push((period, node));
        }
        Ok(out)
    }

    fn ledger_row(&self, period_start_ms: u64, node: &NodeId) -> Result<LedgerRow, MetaError> {
        match self
            .db
            .get_cf(self.cf(CF_LEDGER), period_key(ROW, period_start_ms, node))?
        {
            Some(bytes) => decode("ledger row", &bytes),
            None => Ok(LedgerRow::default()),
        }
    }

    /// Up to `limit` rows of periods that started before `before_ms` and are not settled, in
    /// period order.
    pub fn ledger_unsettled(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, MetaError> {
        self.ledger_queue(UNSETTLED, before_ms, limit)
    }

    /// Up to `limit` settled rows whose statement the node has not acknowledged, oldest first.
    pub fn ledger_undelivered(&self, limit: usize) -> Result<Vec<LedgerEntry>, MetaError> {
        self.ledger_queue(UNDELIVERED, u64::MAX, limit)
    }

    /// The rows a queue (`tag`) names, of periods before `before_ms`.
    fn ledger_queue(
        &self,
        tag: u8,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, MetaError> {
        self.ledger_scan(tag, before_ms, limit)?
            .into_iter()
            .map(|(period_start_ms, node)| {
                let row = self.ledger_row(period_start_ms, &node)?;
                Ok(LedgerEntry {
                    period_start_ms,
                    node,
                    row,
                })
            })
            .collect()
    }

    /// `node`'s running totals (all zero before its first settled period).
    pub fn ledger_account(&self, node: &NodeId) -> Result<LedgerAccount, MetaError> {
        match self.db.get_cf(self.cf(CF_LEDGER), opening_key(node))? {
            Some(bytes) => decode("ledger account", &bytes),
            None => Ok(LedgerAccount::default()),
        }
    }

    /// Settles `node`'s periods with their statements and stores its running totals after
    /// them: one write.
    pub fn ledger_settle(
        &self,
        node: &NodeId,
        statements: &[SignedStatement],
        account: &LedgerAccount,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        let cf = self.cf(CF_LEDGER);
        let mut batch = WriteBatch::default();
        for s in statements {
            let period = s.statement.period_start_ms;
            let row = LedgerRow {
                measured: s.statement.measured,
                settled: Some(s.clone()),
            };
            batch.put_cf(cf, period_key(ROW, period, node), encode(&row));
            batch.delete_cf(cf, period_key(UNSETTLED, period, node));
            batch.put_cf(cf, period_key(UNDELIVERED, period, node), []);
        }
        batch.put_cf(cf, opening_key(node), encode(account));
        self.write(batch)
    }

    /// The node has its copy of the statement (or will never take it).
    pub fn ledger_delivered(&self, period_start_ms: u64, node: &NodeId) -> Result<(), MetaError> {
        self.db.delete_cf(
            self.cf(CF_LEDGER),
            period_key(UNDELIVERED, period_start_ms, node),
        )?;
        Ok(())
    }

    /// Every row of the periods that start in `[from_ms, to_ms)`, in period then node order;
    /// `visit` returns `false` to stop.
    pub fn ledger_rows(
        &self,
        from_ms: u64,
        to_ms: u64,
        mut visit: impl FnMut(LedgerEntry) -> bool,
    ) -> Result<(), MetaError> {
        let cf = self.cf(CF_LEDGER);
        let mut from = vec![ROW];
        from.extend_from_slice(&from_ms.to_be_bytes());
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item?;
            if key.first() != Some(&ROW) {
                break;
            }
            let Some((period_start_ms, node)) = parse_period_key(&key) else {
                continue;
            };
            if period_start_ms >= to_ms {
                break;
            }
            let row = decode("ledger row", &value)?;
            if !visit(LedgerEntry {
                period_start_ms,
                node,
                row,
            }) {
                break;
            }
        }
        Ok(())
    }

    /// Drops every row (and its queue entries) of periods that started before `before_ms`.
    pub fn ledger_prune(&self, before_ms: u64) -> Result<(), MetaError> {
        let cf = self.cf(CF_LEDGER);
        let mut batch = WriteBatch::default();
        for tag in [ROW, UNSETTLED, UNDELIVERED] {
            let mut end = vec![tag];
            end.extend_from_slice(&before_ms.to_be_bytes());
            batch.delete_range_cf(cf, vec![tag], end);
        }
        self.write(batch)
    }
}
