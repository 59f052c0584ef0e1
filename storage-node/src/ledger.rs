//! The usage ledger: what a node did for a gateway, in figures that both sides sign.
//!
//! A node keeps running totals per gateway ([`Usage`]: piece bytes sent and stored, bytes ×
//! seconds held, audits answered) and, when its gateway asks, persists them and signs them as a
//! [`SignedReceipt`]. After each ledger period the gateway takes a receipt from every node and
//! pairs it with the one that closed the node's previous period: the difference is what the node
//! claims. It adds its own measurements of the same things, decides what it credits ([`credit`],
//! applied to running totals: [`Statement::rule`]) and signs the whole as a
//! [`SignedStatement`], which the node checks and keeps. Either side can later show a statement the other signed: the node's receipts inside it
//! carry the node's signature, the statement the gateway's, and both verify with nothing but the
//! two peer ids (an ed25519 peer id embeds its public key).
//!
//! The node's totals are cumulative, so node and gateway never have to agree on where periods
//! begin: a receipt is a signed snapshot, and a period's claim is the difference of two.
//!
//! ```
//! use libp2p::identity::Keypair;
//! use storage_node::ledger::{SignedReceipt, SignedStatement, Statement, Usage};
//!
//! let (node, gateway) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
//! let gw = gateway.public().to_peer_id();
//! let totals = Usage { egress_bytes: 5 << 20, ..Usage::default() };
//! let mut statement = Statement {
//!     node: node.public().to_peer_id().to_bytes(),
//!     gateway: gw.to_bytes(),
//!     period_start_ms: 0,
//!     period_end_ms: 3_600_000,
//!     opening: None,
//!     closing: Some(SignedReceipt::sign(&node, gw, 3_600_000, totals).unwrap()),
//!     measured: Usage { egress_bytes: 4 << 20, ..Usage::default() },
//!     measured_before: Usage::default(),
//!     credited_before: Usage::default(),
//!     credited: Usage::default(),
//! };
//! statement.credited = statement.rule();
//! let signed = SignedStatement::sign(&gateway, statement).unwrap();
//! signed.verify().unwrap();
//! assert_eq!(signed.statement.credited.egress_bytes, 4 << 20); // the smaller of the two
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::store::{decode_record, encode_record, StateEntry, StateStore, StoreError};

const RECEIPT_DOMAIN: &[u8] = b"dsg/ledger/receipt/1\0";
const STATEMENT_DOMAIN: &[u8] = b"dsg/ledger/statement/1\0";
/// Longest peer id accepted in a ledger record (an ed25519 peer id is 38 bytes).
const MAX_PEER_ID_LEN: usize = 64;
/// Longest signature accepted (an ed25519 signature is 64 bytes).
const MAX_SIGNATURE_LEN: usize = 128;
/// Prefix of every state entry the ledger keeps.
pub const LEDGER_PREFIX: &[u8] = b"ledger/";
const TOTALS_PREFIX: &[u8] = b"ledger/totals/";
const STATEMENT_PREFIX: &[u8] = b"ledger/statement/";

/// Why a ledger record cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{what} is not a valid ed25519 peer id")]
    BadPeer { what: &'static str },
    #[error("the {what} signature does not verify")]
    BadSignature { what: &'static str },
    #[error("the receipts name another node or gateway than the statement")]
    WrongParties,
    #[error("the closing receipt is older than the opening one")]
    ReceiptsOutOfOrder,
    #[error("the period ends before it starts")]
    BadPeriod,
    #[error("the credited figures are not what the rule gives for these figures")]
    WrongCredit,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// What a node did for a gateway: piece bytes it sent and stored, how long it held how much,
/// and the audits it passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Piece bytes sent to the gateway (reads, repairs, copies).
    pub egress_bytes: u64,
    /// Piece bytes received from the gateway and stored.
    pub ingress_bytes: u64,
    /// Bytes held × seconds held.
    pub byte_seconds: u128,
    /// Audits answered with a proof (node) or judged passed (gateway).
    pub audits_passed: u64,
    /// Audits the node could not prove (node) or judged failed or timed out (gateway).
    pub audits_failed: u64,
}

impl Usage {
    /// `f` applied field by field to `self` and `other` (the `u64` fields saturate).
    fn zip(&self, other: &Usage, f: impl Fn(u128, u128) -> u128) -> Usage {
        let small = |a: u64, b: u64| u64::try_from(f(a.into(), b.into())).unwrap_or(u64::MAX);
        Usage {
            egress_bytes: small(self.egress_bytes, other.egress_bytes),
            ingress_bytes: small(self.ingress_bytes, other.ingress_bytes),
            byte_seconds: f(self.byte_seconds, other.byte_seconds),
            audits_passed: small(self.audits_passed, other.audits_passed),
            audits_failed: small(self.audits_failed, other.audits_failed),
        }
    }

    /// `self − earlier`, field by field, never below zero (a node's totals only grow; a field
    /// that shrank claims nothing).
    pub fn since(&self, earlier: &Usage) -> Usage {
        self.zip(earlier, u128::saturating_sub)
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Usage) {
        *self = self.zip(other, u128::saturating_add);
    }

    /// Byte-hours held.
    pub fn byte_hours(&self) -> f64 {
        self.byte_seconds as f64 / 3600.0
    }

    /// Whether nothing was recorded.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// The credit rule, on running totals: for traffic and storage, the smaller of what the
/// gateway measured and what the node signed (neither side can inflate a figure alone); audits
/// as the gateway judged them. Without a signed figure (`claimed: None`), the measurement.
///
/// Applied to totals rather than to one period's figures, a disagreement of timing (a read in
/// flight when a receipt was signed, counted by the node in one period and by the gateway in
/// the next) is made up in the next period instead of being lost.
pub fn credit(measured_total: &Usage, claimed_total: Option<&Usage>) -> Usage {
    let Some(claimed) = claimed_total else {
        return *measured_total;
    };
    Usage {
        audits_passed: measured_total.audits_passed,
        audits_failed: measured_total.audits_failed,
        ..measured_total.zip(claimed, u128::min)
    }
}

/// A node's totals for one gateway at a moment, as the node states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The node's peer id (bytes).
    pub node: Vec<u8>,
    /// The gateway's peer id (bytes).
    pub gateway: Vec<u8>,
    /// When the node took the snapshot (ms since the epoch, the node's clock).
    pub at_ms: u64,
    /// Everything the node did for the gateway up to then.
    pub totals: Usage,
}

/// A [`Receipt`] with the node's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub signature: Vec<u8>,
}

fn digest<T: Serialize>(domain: &[u8], value: &T) -> [u8; 32] {
    let bytes = match postcard::to_allocvec(value) {
        Ok(b) => b,
        Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(domain);
    hasher.update(&bytes);
    *hasher.finalize().as_bytes()
}

/// The public key inside an ed25519 peer id (`None` for any other kind of id).
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None; // not an identity multihash: the key is not inside the id
    }
    PublicKey::try_decode_protobuf(multihash.digest()).ok()
}

fn peer(bytes: &[u8], what: &'static str) -> Result<PeerId, LedgerError> {
    if bytes.len() > MAX_PEER_ID_LEN {
        return Err(LedgerError::BadPeer { what });
    }
    let id = PeerId::from_bytes(bytes).map_err(|_| LedgerError::BadPeer { what })?;
    public_key(&id).map_or(Err(LedgerError::BadPeer { what }), |_| Ok(id))
}

fn check_signature(
    signer: &PeerId,
    message: &[u8],
    signature: &[u8],
    what: &'static str,
) -> Result<(), LedgerError> {
    let ok = signature.len() <= MAX_SIGNATURE_LEN
        && public_key(signer).is_some_and(|key| key.verify(message, signature));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::BadSignature { what })
    }
}

impl SignedReceipt {
    /// The node (`keypair`) states `totals` for `gateway` at `at_ms`.
    pub fn sign(
        keypair: &Keypair,
        gateway: PeerId,
        at_ms: u64,
        totals: Usage,
    ) -> Result<Self, LedgerError> {
        let receipt = Receipt {
            node: keypair.public().to_peer_id().to_bytes(),
            gateway: gateway.to_bytes(),
            at_ms,
            totals,
        };
        let signature = keypair
            .sign(&digest(RECEIPT_DOMAIN, &receipt))
            .map_err(|e| LedgerError::Signing(e.to_string()))?;
        Ok(SignedReceipt { receipt, signature })
    }

    /// Checks the node's signature; returns (node, gateway).
    pub fn verify(&self) -> Result<(PeerId, PeerId), LedgerError> {
        let node = peer(&self.receipt.node, "the receipt's node")?;
        let gateway = peer(&self.receipt.gateway, "the receipt's gateway")?;
        check_signature(
            &node,
            &digest(RECEIPT_DOMAIN, &self.receipt),
            &self.signature,
            "node's receipt",
        )?;
        Ok((node, gateway))
    }
}

/// The gateway's account of one node over one period. It carries the running totals before
/// the period, so that what it credits follows from its own fields (and a chain of statements
/// can be checked for gaps: each one's totals before are the previous one's after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub node: Vec<u8>,
    pub gateway: Vec<u8>,
    /// The period, `[start, end)` in ms since the epoch (the gateway's clock).
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    /// The node's receipt that closed its previous claim (`None`: the first).
    pub opening: Option<SignedReceipt>,
    /// The node's receipt taken when this period was settled (`None`: none was taken, because
    /// the node could not be reached in time or a later period of the same settlement took it).
    pub closing: Option<SignedReceipt>,
    /// What the gateway measured in the period.
    pub measured: Usage,
    /// What the gateway had measured of the node before the period.
    pub measured_before: Usage,
    /// What it had credited the node before the period.
    pub credited_before: Usage,
    /// What it credits for the period: see [`Statement::rule`].
    pub credited: Usage,
}

impl Statement {
    /// What the node claims since its previous receipt: closing totals minus opening ones.
    pub fn claimed(&self) -> Option<Usage> {
        let closing = self.closing.as_ref()?;
        let opening = self
            .opening
            .as_ref()
            .map(|o| o.receipt.totals)
            .unwrap_or_default();
        Some(closing.receipt.totals.since(&opening))
    }

    /// The gateway's running measurement after the period.
    pub fn measured_after(&self) -> Usage {
        let mut after = self.measured_before;
        after.add(&self.measured);
        after
    }

    /// The running credit after the period: [`credit`] of the measured totals and the node's
    /// closing totals, never below the credit before; without a closing receipt, the credit
    /// before plus the period's measurement.
    pub fn credited_after_by_rule(&self) -> Usage {
        match &self.closing {
            Some(closing) => self.credited_before.zip(
                &credit(&self.measured_after(), Some(&closing.receipt.totals)),
                u128::max,
            ),
            None => {
                let mut after = self.credited_before;
                after.add(&self.measured);
                after
            }
        }
    }

    /// What the rule credits for the period (the running credit's growth).
    pub fn rule(&self) -> Usage {
        self.credited_after_by_rule().since(&self.credited_before)
    }

    /// The running credit after the period, as stated.
    pub fn credited_after(&self) -> Usage {
        let mut after = self.credited_before;
        after.add(&self.credited);
        after
    }
}

/// A [`Statement`] with the gateway's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatement {
    pub statement: Statement,
    pub signature: Vec<u8>,
}

impl SignedStatement {
    /// The gateway (`keypair`) signs `statement`.
    pub fn sign(keypair: &Keypair, statement: Statement) -> Result<Self, LedgerError> {
        let signature = keypair
            .sign(&digest(STATEMENT_DOMAIN, &statement))
            .map_err(|e| LedgerError::Signing(e.to_string()))?;
        Ok(SignedStatement {
            statement,
            signature,
        })
    }

    /// Checks everything a third party can: the gateway's signature, the node's on each
    /// receipt, that the receipts belong to this node and gateway and are in order, and that
    /// the credit follows the rule. Returns (node, gateway).
    pub fn verify(&self) -> Result<(PeerId, PeerId), LedgerError> {
        let s = &self.statement;
        let node = peer(&s.node, "the statement's node")?;
        let gateway = peer(&s.gateway, "the statement's gateway")?;
        check_signature(
            &gateway,
            &digest(STATEMENT_DOMAIN, s),
            &self.signature,
            "gateway's statement",
        )?;
        if s.period_end_ms < s.period_start_ms {
            return Err(LedgerError::BadPeriod);
        }
        for receipt in [&s.opening, &s.closing].into_iter().flatten() {
            if receipt.verify()? != (node, gateway) {
                return Err(LedgerError::WrongParties);
            }
        }
        if let (Some(o), Some(c)) = (&s.opening, &s.closing) {
            if c.receipt.at_ms < o.receipt.at_ms {
                return Err(LedgerError::ReceiptsOutOfOrder);
            }
        }
        if s.credited != s.rule() {
            return Err(LedgerError::WrongCredit);
        }
        Ok((node, gateway))
    }
}

fn totals_key(gateway: &PeerId) -> Vec<u8> {
    [TOTALS_PREFIX, &gateway.to_bytes()].concat()
}

fn statement_key(gateway: &PeerId, period_start_ms: u64) -> Vec<u8> {
    let id = gateway.to_bytes();
    let mut key = STATEMENT_PREFIX.to_vec();
    key.push(id.len() as u8); // a peer id is at most 64 bytes here
    key.extend_from_slice(&id);
    key.extend_from_slice(&period_start_ms.to_be_bytes());
    key
}

/// The node's side of the ledger: its running totals per gateway, persisted in the store's
/// state, and the statements its gateways countersigned.
pub struct NodeLedger {
    state: Arc<dyn StateStore>,
    inner: Mutex<Totals>,
}

struct Totals {
    by_gateway: BTreeMap<PeerId, Usage>,
    /// When held bytes were last accrued (ms; `None`: not yet in this run).
    accrued_at_ms: Option<u64>,
}

impl std::fmt::Debug for NodeLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLedger").finish_non_exhaustive()
    }
}

/// What a node's ledger holds for one gateway (for `storage-node status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayAccount {
    pub gateway: String,
    /// The totals as last saved.
    pub totals: Usage,
    /// Statements the gateway countersigned.
    pub statements: usize,
    /// The sum of what they credit.
    pub credited: Usage,
    /// The newest one.
    pub last: Option<SignedStatement>,
}

impl NodeLedger {
    /// The ledger kept in `state`, starting from the totals saved there.
    pub fn open(state: Arc<dyn StateStore>) -> Result<Self, StoreError> {
        let by_gateway = saved_totals(&state.load_state(TOTALS_PREFIX)?).collect();
        Ok(NodeLedger {
            state,
            inner: Mutex::new(Totals {
                by_gateway,
                accrued_at_ms: None,
            }),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Totals) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts piece bytes sent to and stored for `gateway`.
    pub fn traffic(&self, gateway: PeerId, egress: u64, ingress: u64) {
        self.with(|t| {
            let u = t.by_gateway.entry(gateway).or_default();
            u.egress_bytes = u.egress_bytes.saturating_add(egress);
            u.ingress_bytes = u.ingress_bytes.saturating_add(ingress);
        });
    }

    /// Counts an audit `gateway` sent: proved or not.
    pub fn audit(&self, gateway: PeerId, proved: bool) {
        self.with(|t| {
            let u = t.by_gateway.entry(gateway).or_default();
            if proved {
                u.audits_passed += 1;
            } else {
                u.audits_failed += 1;
            }
        });
    }

    /// Accrues `held_bytes` × the time since the last accrual to every gateway in `gateways`
    /// (the store is shared: each gateway's receipt states the whole store's holding). The
    /// first call of a run only starts the clock.
    pub fn accrue(&self, gateways: &[PeerId], held_bytes: u64, now_ms: u64) {
        self.with(|t| {
            if let Some(then) = t.accrued_at_ms {
                let elapsed_ms = u128::from(now_ms.saturating_sub(then));
                let byte_seconds = u128::from(held_bytes) * elapsed_ms / 1000;
                for gateway in gateways {
                    let u = t.by_gateway.entry(*gateway).or_default();
                    u.byte_seconds = u.byte_seconds.saturating_add(byte_seconds);
                }
            }
            t.accrued_at_ms = Some(t.accrued_at_ms.map_or(now_ms, |then| then.max(now_ms)));
        });
    }

    /// The running totals for `gateway`.
    pub fn totals(&self, gateway: &PeerId) -> Usage {
        self.with(|t| t.by_gateway.get(gateway).copied().unwrap_or_default())
    }

    /// Writes every gateway's totals durably.
    pub fn save(&self) -> Result<(), StoreError> {
        let entries: Vec<StateEntry> = self.with(|t| {
            t.by_gateway
                .iter()
                .map(|(g, u)| (totals_key(g), encode_record(u)))
                .collect()
        });
        self.state.save_state(&entries)
    }

    /// Saves the totals, then signs `gateway`'s as a receipt: a signed figure is never ahead of
    /// what a restart starts again from.
    pub fn receipt(
        &self,
        keypair: &Keypair,
        gateway: PeerId,
        now_ms: u64,
    ) -> Result<SignedReceipt, ReceiptError> {
        self.save().map_err(ReceiptError::Store)?;
        SignedReceipt::sign(keypair, gateway, now_ms, self.totals(&gateway))
            .map_err(ReceiptError::Ledger)
    }

    /// Keeps a statement `gateway` countersigned, after checking that it verifies, is from
    /// that gateway, is about `me`, and closes on a receipt `me` signed.
    pub fn record(
        &self,
        me: &PeerId,
        gateway: &PeerId,
        statement: &SignedStatement,
    ) -> Result<(), ReceiptError> {
        let (node, signer) = statement.verify().map_err(ReceiptError::Ledger)?;
        if node != *me || signer != *gateway {
            return Err(ReceiptError::Ledger(LedgerError::WrongParties));
        }
        let key = statement_key(gateway, statement.statement.period_start_ms);
        self.state
            .save_state(&[(key, encode_record(statement))])
            .map_err(ReceiptError::Store)
    }

    /// Every gateway's account, from what `state` holds (works on a read-only look at a store).
    pub fn accounts(state: &dyn StateStore) -> Result<Vec<GatewayAccount>, StoreError> {
        Ok(accounts_from(state.load_state(LEDGER_PREFIX)?))
    }
}

/// The per-gateway totals among state entries (others, and any that do not decode, skipped).
fn saved_totals(entries: &[StateEntry]) -> impl Iterator<Item = (PeerId, Usage)> + '_ {
    entries.iter().filter_map(|(key, value)| {
        let gateway = PeerId::from_bytes(key.strip_prefix(TOTALS_PREFIX)?).ok()?;
        Some((gateway, decode_record::<Usage>(value)?))
    })
}

fn account<'a>(
    accounts: &'a mut BTreeMap<String, GatewayAccount>,
    gateway: &PeerId,
) -> &'a mut GatewayAccount {
    let name = gateway.to_string();
    accounts
        .entry(name.clone())
        .or_insert_with(|| GatewayAccount {
            gateway: name,
            totals: Usage::default(),
            statements: 0,
            credited: Usage::default(),
            last: None,
        })
}

/// Builds the accounts from the store's state entries, in key order (as
/// [`StateStore::load_state`] returns them); entries of other kinds, or that do not decode, are
/// skipped.
pub fn accounts_from(entries: Vec<StateEntry>) -> Vec<GatewayAccount> {
    let mut accounts = BTreeMap::new();
    for (gateway, totals) in saved_totals(&entries) {
        account(&mut accounts, &gateway).totals = totals;
    }
    // Keys sort by gateway, then period: the last one seen per gateway is the newest.
    for (key, value) in &entries {
        if !key.starts_with(STATEMENT_PREFIX) {
            continue;
        }
        let Some(s) = decode_record::<SignedStatement>(value) else {
            continue;
        };
        let Ok(gateway) = PeerId::from_bytes(&s.statement.gateway) else {
            continue;
        };
        let a = account(&mut accounts, &gateway);
        a.statements += 1;
        a.credited.add(&s.statement.credited);
        a.last = Some(s);
    }
    accounts.into_values().collect()
}

/// Why a node could not give or keep a ledger record.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the ledger could not be saved: {0}")]
    Store(StoreError),
    #[error(transparent)]
    Ledger(LedgerError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn usage(egress: u64, seconds: u128) -> Usage {
        Usage {
            egress_bytes: egress,
            ingress_bytes: egress / 2,
            byte_seconds: seconds,
            audits_passed: 3,
            audits_failed: 1,
        }
    }

    /// A statement over `measured`, after running totals `before` (measured, credited), closed
    /// by a receipt of `closing` totals if any.
    fn statement(
        node: &Keypair,
        gateway: &Keypair,
        before: (Usage, Usage),
        closing: Option<Usage>,
        measured: Usage,
    ) -> Statement {
        let gw = gateway.public().to_peer_id();
        let closing = closing.map(|u| SignedReceipt::sign(node, gw, 2_000, u).unwrap());
        let mut s = Statement {
            node: node.public().to_peer_id().to_bytes(),
            gateway: gw.to_bytes(),
            period_start_ms: 0,
            period_end_ms: 1_000,
            opening: None,
            closing,
            measured,
            measured_before: before.0,
            credited_before: before.1,
            credited: Usage::default(),
        };
        s.credited = s.rule();
        s
    }

    #[test]
    fn a_statement_credits_the_smaller_figure_and_verifies_with_only_the_peer_ids() {
        let (node, gateway) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let zero = (Usage::default(), Usage::default());
        let s = statement(
            &node,
            &gateway,
            zero,
            Some(usage(6_000, 100)),
            usage(4_000, 200),
        );
        assert_eq!(s.claimed(), Some(usage(6_000, 100)));
        assert_eq!(s.credited.egress_bytes, 4_000); // measured 4000 < claimed 6000
        assert_eq!(s.credited.byte_seconds, 100); // claimed 100 < measured 200
        assert_eq!(s.credited.audits_passed, 3); // the gateway's verdicts
        let signed = SignedStatement::sign(&gateway, s).unwrap();
        let parties = (node.public().to_peer_id(), gateway.public().to_peer_id());
        assert_eq!(signed.verify(), Ok(parties));
    }

    #[test]
    fn bytes_counted_in_different_periods_by_each_side_are_credited_once() {
        let (node, gateway) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let bytes = |egress| Usage {
            egress_bytes: egress,
            ..Usage::default()
        };
        // A read was in flight when the node signed: it counted 5000 bytes, the gateway 4000.
        let first = statement(
            &node,
            &gateway,
            (Usage::default(), Usage::default()),
            Some(bytes(5_000)),
            bytes(4_000),
        );
        assert_eq!(first.credited, bytes(4_000));
        // The gateway counts the last 1000 in the next period; the node did nothing more.
        let second = statement(
            &node,
            &gateway,
            (first.measured_after(), first.credited_after()),
            Some(bytes(5_000)),
            bytes(1_000),
        );
        assert_eq!(second.credited, bytes(1_000));
        // A node that claims less than before is not credited below what it already got.
        let third = statement(
            &node,
            &gateway,
            (second.measured_after(), second.credited_after()),
            Some(bytes(10)),
            bytes(0),
        );
        assert_eq!(third.credited, Usage::default());
        for s in [first, second, third] {
            SignedStatement::sign(&gateway, s)
                .unwrap()
                .verify()
                .unwrap();
        }
    }

    #[test]
    fn every_tampering_is_caught() {
        let (node, gateway) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let other = Keypair::generate_ed25519();
        let good = SignedStatement::sign(
            &gateway,
            statement(
                &node,
                &gateway,
                (Usage::default(), Usage::default()),
                Some(usage(10, 10)),
                usage(10, 10),
            ),
        )
        .unwrap();
        let mut inflated = good.clone();
        inflated.statement.credited.egress_bytes += 1;
        assert_eq!(
            inflated.verify(),
            Err(LedgerError::BadSignature {
                what: "gateway's statement"
            })
        );
        // A gateway that signs a credit the rule does not give.
        let mut s = good.statement.clone();
        s.credited.egress_bytes = 11;
        let wrong = SignedStatement::sign(&gateway, s).unwrap();
        assert_eq!(wrong.verify(), Err(LedgerError::WrongCredit));
        // A receipt the node did not sign.
        let mut s = good.statement.clone();
        if let Some(c) = s.closing.as_mut() {
            c.receipt.totals.egress_bytes = 99;
        }
        let forged = SignedStatement::sign(&gateway, s).unwrap();
        assert!(matches!(
            forged.verify(),
            Err(LedgerError::BadSignature { .. })
        ));
        // Another node's receipt.
        let mut s = good.statement.clone();
        s.closing = Some(
            SignedReceipt::sign(&other, gateway.public().to_peer_id(), 5, usage(1, 1)).unwrap(),
        );
        s.credited = s.rule();
        let swapped = SignedStatement::sign(&gateway, s).unwrap();
        assert_eq!(swapped.verify(), Err(LedgerError::WrongParties));
        // Signed by someone who is not the gateway named.
        let impostor = SignedStatement::sign(&other, good.statement.clone()).unwrap();
        assert!(matches!(
            impostor.verify(),
            Err(LedgerError::BadSignature { .. })
        ));
        // Garbage peer ids.
        let mut s = good.statement.clone();
        s.node = vec![0xff; 300];
        let garbage = SignedStatement::sign(&gateway, s).unwrap();
        assert!(matches!(garbage.verify(), Err(LedgerError::BadPeer { .. })));
    }

    #[test]
    fn without_a_receipt_the_measurement_is_credited() {
        let (node, gateway) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let before = (usage(7, 7), usage(3, 3));
        let s = statement(&node, &gateway, before, None, usage(5, 5));
        assert_eq!(s.credited, usage(5, 5));
        assert_eq!(credit(&usage(5, 5), None), usage(5, 5));
    }

    #[test]
    fn the_node_ledger_counts_saves_signs_and_keeps_statements() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new(1 << 20));
        let (node, gateway) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (me, gw) = (node.public().to_peer_id(), gateway.public().to_peer_id());
        let ledger = NodeLedger::open(store.clone()).unwrap();
        ledger.traffic(gw, 100, 40);
        ledger.audit(gw, true);
        ledger.audit(gw, false);
        ledger.accrue(&[gw], 1_000, 10_000); // starts the clock
        ledger.accrue(&[gw], 1_000, 13_500); // 1000 bytes for 3.5 s
        let receipt = ledger.receipt(&node, gw, 13_500).unwrap();
        let expected = Usage {
            egress_bytes: 100,
            ingress_bytes: 40,
            byte_seconds: 3_500,
            audits_passed: 1,
            audits_failed: 1,
        };
        assert_eq!(receipt.receipt.totals, expected);
        assert_eq!(receipt.verify(), Ok((me, gw)));

        // A restart starts again from what the receipt stated.
        let reopened = NodeLedger::open(store.clone()).unwrap();
        assert_eq!(reopened.totals(&gw), expected);

        let s = statement(
            &node,
            &gateway,
            (Usage::default(), Usage::default()),
            Some(expected),
            expected,
        );
        let signed = SignedStatement::sign(&gateway, s).unwrap();
        // Kept only from the gateway it names, about this node.
        let stranger = Keypair::generate_ed25519().public().to_peer_id();
        assert!(reopened.record(&me, &stranger, &signed).is_err());
        assert!(reopened.record(&stranger, &gw, &signed).is_err());
        reopened.record(&me, &gw, &signed).unwrap();
        let accounts = NodeLedger::accounts(store.as_ref()).unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].gateway, gw.to_string());
        assert_eq!(accounts[0].totals, expected);
        assert_eq!(accounts[0].statements, 1);
        assert_eq!(accounts[0].credited, expected);
    }

    #[test]
    fn undecodable_records_decode_to_nothing() {
        for bytes in [
            &b""[..],
            &[crate::store::RECORD_FORMAT][..],
            &[9, 1, 2][..],
            &[crate::store::RECORD_FORMAT; 40][..],
        ] {
            assert!(decode_record::<SignedStatement>(bytes).is_none());
        }
    }
}
