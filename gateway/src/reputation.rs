//! Node reputation: scores from audit history, and the state placement and repair act on.
//!
//! Two beta reputations with forgetting, as Storj uses: after each observation
//! `α ← λα + v`, `β ← λβ + (1 − v)` with `v = 1` for a success, and the score is `α / (α + β)`.
//! Both start at `α = 1 / (1 − λ)`, `β = 0` — the steady state of a node that never failed — so
//! one early failure does not sink a new node. `λ` sets the memory: about `1 / (1 − λ)`
//! observations. The steady-state audit score of a node that lost a fraction `f` of its pieces is
//! `1 − f`.
//!
//! - **Audit score** (pass = success; fail or timeout = failure). Below
//!   [`Policy::disqualify_below`] the node is disqualified for good. With the defaults
//!   (`λ = 0.99`, 0.96) a node that lost everything is disqualified after 5 audits; one that
//!   lost 5 % settles at 0.95 and crosses after ~160; an honest node would need 4 failures
//!   close together (4 lost pieces), which the repair of the first ones makes unlikely.
//! - **Online score** (reachable when audited = success). Below [`Policy::suspend_below`] the
//!   node is suspended (no new pieces; what it holds still counts while it is online); it is
//!   reinstated above the threshold plus a margin. Offline without a break for longer than
//!   [`Policy::offline_disqualify`] disqualifies it.
//! - **Vetting**: a new node gets a small share of new pieces until it has passed
//!   [`Policy::vetting_audits`] audits.
//!
//! Every state change records its reason, with the audit counts of the last 24 hours.

use serde::{Deserialize, Serialize};

use crate::meta::Verdict;

/// How reputation is scored. See the module documentation for the defaults' reasoning.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Forgetting factor of both scores.
    pub lambda: f64,
    /// Audit score below which a node is disqualified.
    pub disqualify_below: f64,
    /// Online score below which a node is suspended.
    pub suspend_below: f64,
    /// Audits a new node must pass before it is active.
    pub vetting_audits: u32,
    /// Offline longer than this (ms) disqualifies.
    pub offline_disqualify_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            lambda: 0.99,
            disqualify_below: 0.96,
            suspend_below: 0.6,
            vetting_audits: 10,
            offline_disqualify_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// New: a limited share of new pieces until it has passed enough audits.
    Vetting,
    /// In good standing.
    Active,
    /// Too often offline: no new pieces until it is reliably back.
    Suspended,
    /// Out for good: no pieces, and what it held counts as lost.
    Disqualified,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Vetting => "vetting",
            NodeState::Active => "active",
            NodeState::Suspended => "suspended",
            NodeState::Disqualified => "disqualified",
        }
    }
}

/// A beta reputation with forgetting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beta {
    pub alpha: f64,
    pub beta: f64,
}

impl Beta {
    fn new(lambda: f64) -> Self {
        Beta {
            alpha: 1.0 / (1.0 - lambda),
            beta: 0.0,
        }
    }

    fn observe(&mut self, lambda: f64, success: bool) {
        let v = if success { 1.0 } else { 0.0 };
        self.alpha = lambda * self.alpha + v;
        self.beta = lambda * self.beta + (1.0 - v);
    }

    /// `α / (α + β)`, in `[0, 1]`.
    pub fn score(&self) -> f64 {
        let total = self.alpha + self.beta;
        if total > 0.0 {
            self.alpha / total
        } else {
            1.0
        }
    }
}

/// Audit counts of one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HourCounts {
    /// Hours since the Unix epoch.
    pub hour: u64,
    pub passed: u32,
    pub failed: u32,
    pub timeouts: u32,
    pub offline: u32,
}

/// Everything the gateway keeps about a node's conduct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReputation {
    pub state: NodeState,
    /// Why it is in this state.
    pub reason: String,
    /// When the state last changed (ms since the epoch).
    pub changed_ms: u64,
    pub audit: Beta,
    pub online: Beta,
    pub passed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub offline: u64,
    /// Since when it has been unreachable without a break, if it is.
    pub offline_since_ms: Option<u64>,
    /// The last 24 hours, oldest first.
    pub hours: Vec<HourCounts>,
    /// Its pieces were queued for repair after it went missing (reset when it is back).
    pub swept: bool,
}

const HOUR_MS: u64 = 3600 * 1000;

impl NodeReputation {
    /// A node seen for the first time.
    pub fn new(policy: &Policy, now_ms: u64) -> Self {
        NodeReputation {
            state: if policy.vetting_audits == 0 {
                NodeState::Active
            } else {
                NodeState::Vetting
            },
            reason: "new node".into(),
            changed_ms: now_ms,
            audit: Beta::new(policy.lambda),
            online: Beta::new(policy.lambda),
            passed: 0,
            failed: 0,
            timeouts: 0,
            offline: 0,
            offline_since_ms: None,
            hours: Vec::new(),
            swept: false,
        }
    }

    /// Counts of the last 24 hours: (passed, failed, timeouts, offline).
    pub fn last_day(&self, now_ms: u64) -> HourCounts {
        let now_hour = now_ms / HOUR_MS;
        let mut sum = HourCounts::default();
        for h in self.hours.iter().filter(|h| h.hour + 24 > now_hour) {
            sum.passed += h.passed;
            sum.failed += h.failed;
            sum.timeouts += h.timeouts;
            sum.offline += h.offline;
        }
        sum
    }

    fn day_summary(&self, now_ms: u64) -> String {
        let d = self.last_day(now_ms);
        let total = d.passed + d.failed + d.timeouts;
        format!(
            "{} failed and {} timed-out audits of {total} in 24 h, offline at {} of {} audit attempts",
            d.failed,
            d.timeouts,
            d.offline,
            total + d.offline
        )
    }

    /// Takes in one audit's verdict; returns the new state if it changed.
    pub fn observe(&mut self, verdict: Verdict, now_ms: u64, policy: &Policy) -> Option<NodeState> {
        let hour = now_ms / HOUR_MS;
        if self.hours.last().is_none_or(|h| h.hour != hour) {
            self.hours.push(HourCounts {
                hour,
                ..HourCounts::default()
            });
        }
        self.hours.retain(|h| h.hour + 24 > hour);
        let Some(this_hour) = self.hours.last_mut() else {
            unreachable!("the current hour was just pushed");
        };
        match verdict {
            Verdict::Pass => {
                self.passed += 1;
                this_hour.passed += 1;
            }
            Verdict::Fail => {
                self.failed += 1;
                this_hour.failed += 1;
            }
            Verdict::Timeout => {
                self.timeouts += 1;
                this_hour.timeouts += 1;
            }
            Verdict::Offline => {
                self.offline += 1;
                this_hour.offline += 1;
            }
        }
        if verdict == Verdict::Offline {
            self.online.observe(policy.lambda, false);
            self.offline_since_ms.get_or_insert(now_ms);
        } else {
            self.online.observe(policy.lambda, true);
            self.offline_since_ms = None;
            self.audit.observe(policy.lambda, verdict == Verdict::Pass);
        }
        self.decide(now_ms, policy)
    }

    /// Notes that the node is unreachable right now (no audit was possible); returns the new
    /// state if that changed it.
    pub fn observe_offline(&mut self, now_ms: u64, policy: &Policy) -> Option<NodeState> {
        self.observe(Verdict::Offline, now_ms, policy)
    }

    fn decide(&mut self, now_ms: u64, policy: &Policy) -> Option<NodeState> {
        if self.state == NodeState::Disqualified {
            return None;
        }
        let (next, reason) = if self.audit.score() < policy.disqualify_below {
            (
                NodeState::Disqualified,
                format!(
                    "audit score {:.3} fell below {}: {}",
                    self.audit.score(),
                    policy.disqualify_below,
                    self.day_summary(now_ms)
                ),
            )
        } else if let Some(since) = self
            .offline_since_ms
            .filter(|&s| now_ms.saturating_sub(s) > policy.offline_disqualify_ms)
        {
            (
                NodeState::Disqualified,
                format!(
                    "offline for {} s without a break (limit {} s)",
                    now_ms.saturating_sub(since) / 1000,
                    policy.offline_disqualify_ms / 1000
                ),
            )
        } else if self.online.score() < policy.suspend_below {
            (
                NodeState::Suspended,
                format!(
                    "online score {:.3} fell below {}: {}",
                    self.online.score(),
                    policy.suspend_below,
                    self.day_summary(now_ms)
                ),
            )
        } else if self.state == NodeState::Suspended
            && self.online.score() < (policy.suspend_below + 0.1).min(1.0)
        {
            return None; // not yet reliably back
        } else if self.passed < u64::from(policy.vetting_audits) {
            (
                NodeState::Vetting,
                format!(
                    "{} of {} audits needed for vetting passed",
                    self.passed, policy.vetting_audits
                ),
            )
        } else {
            (
                NodeState::Active,
                if self.state == NodeState::Vetting {
                    format!("vetted: passed {} audits", self.passed)
                } else {
                    format!("back online: online score {:.3}", self.online.score())
                },
            )
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        self.reason = reason;
        self.changed_ms = now_ms;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn a_node_that_lost_everything_is_disqualified_after_five_failed_audits() {
        let policy = Policy::default();
        let mut r = NodeReputation::new(&policy, T0);
        for i in 0..4 {
            assert_ne!(
                r.observe(Verdict::Fail, T0 + i, &policy),
                Some(NodeState::Disqualified)
            );
        }
        assert_eq!(
            r.observe(Verdict::Fail, T0 + 5, &policy),
            Some(NodeState::Disqualified)
        );
        assert!(r.reason.contains("5 failed"), "{}", r.reason);
        // For good: passes do not bring it back.
        for i in 0..100 {
            assert_eq!(r.observe(Verdict::Pass, T0 + 10 + i, &policy), None);
        }
        assert_eq!(r.state, NodeState::Disqualified);
    }

    #[test]
    fn vetting_then_active_and_an_honest_node_survives_rare_failures() {
        let policy = Policy::default();
        let mut r = NodeReputation::new(&policy, T0);
        assert_eq!(r.state, NodeState::Vetting);
        for i in 0..10 {
            r.observe(Verdict::Pass, T0 + i, &policy);
        }
        assert_eq!(r.state, NodeState::Active);
        // One failure in every 100 audits, for a long time.
        for i in 0..5_000u64 {
            let v = if i % 100 == 0 {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            r.observe(v, T0 + 100 + i, &policy);
        }
        assert_eq!(r.state, NodeState::Active, "{}", r.reason);
    }

    #[test]
    fn five_percent_loss_is_disqualified_in_the_long_run() {
        let policy = Policy::default();
        let mut r = NodeReputation::new(&policy, T0);
        let mut n = 0;
        while r.state != NodeState::Disqualified && n < 10_000 {
            // Every 20th audit fails: the steady state is 0.95.
            let v = if n % 20 == 19 {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            r.observe(v, T0 + n, &policy);
            n += 1;
        }
        assert_eq!(r.state, NodeState::Disqualified);
        assert!((100..400).contains(&n), "{n} audits");
    }

    #[test]
    fn offline_suspends_then_disqualifies() {
        let policy = Policy {
            offline_disqualify_ms: 3_600_000,
            ..Policy::default()
        };
        let mut r = NodeReputation::new(&policy, T0);
        for i in 0..10 {
            r.observe(Verdict::Pass, T0 + i, &policy);
        }
        let mut t = T0 + 1000;
        while r.state == NodeState::Active {
            r.observe_offline(t, &policy);
            t += 10_000;
        }
        assert_eq!(r.state, NodeState::Suspended, "{}", r.reason);
        assert!(r.reason.contains("online score"), "{}", r.reason);
        // Back for a while: reinstated.
        while r.state == NodeState::Suspended {
            r.observe(Verdict::Pass, t, &policy);
            t += 10_000;
        }
        assert_eq!(r.state, NodeState::Active);
        // Gone for longer than the limit: disqualified.
        let gone = t;
        while r.state != NodeState::Disqualified && t < gone + 2 * 3_600_000 {
            r.observe_offline(t, &policy);
            t += 60_000;
        }
        assert_eq!(r.state, NodeState::Disqualified);
        assert!(r.reason.contains("offline for"), "{}", r.reason);
    }
}
