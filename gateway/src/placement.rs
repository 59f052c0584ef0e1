//! Where the pieces of a segment go, assuming some nodes are Sybils: weighted rendezvous hashing
//! over the usable nodes, dealt out under rules no stranger can talk its way around.
//!
//! Every node gets a score from a hash of (segment seed, node id), scaled by its weight:
//! `-ln(u) / weight`, lowest first. Over many segments a node is first in proportion to its
//! weight, a node joining or leaving moves only the pieces it wins or held, and the order is
//! deterministic for a seed. Pieces are then dealt out greedily, each to the best-ranked node
//! that the rules admit and whose failure domain holds the fewest pieces of this segment so far:
//!
//! - A node the operator listed ([`Trust::Operator`]) has the failure domain the operator gave
//!   it; pieces spread over those domains evenly and double up only when there are too few.
//! - A stranger's failure domain is the network the gateway sees its connection come from (the
//!   /24 of IPv4, the /48 of IPv6), never a label it sent. One network holds at most
//!   [`Rules::per_network`] pieces of a segment, so a crowd of nodes behind one address range
//!   counts as one, however many identities it makes up.
//! - A stranger still in vetting ([`Trust::Unvetted`]) gets at most one piece of a segment (at
//!   most `m` could ever be lost to strangers that vanish together, and `m >= 1`), and only in a
//!   [`Rules::unvetted_share`] of segments, unless the segment cannot be placed without one.
//!
//! A segment the rules cannot fill is refused with a [`Shortfall`] that says what is missing,
//! rather than placed where a departing crowd could take it down.

use std::collections::HashMap;

/// How far placement trusts a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trust {
    /// Listed in the gateway's configuration with a failure domain: its domain is believed.
    Operator,
    /// A stranger that passed its vetting audits.
    Vetted,
    /// A stranger still in vetting.
    Unvetted,
}

impl Trust {
    /// A stranger: its pieces are capped per observed network.
    fn is_stranger(self) -> bool {
        !matches!(self, Trust::Operator)
    }
}

/// A node placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<N> {
    pub node: N,
    /// How strongly it is preferred (bytes it may take, as the registry bounds them). 0
    /// excludes it.
    pub weight: u64,
    /// Its failure domain: the operator's name for it, or its observed network. Equal strings
    /// share a fate.
    pub domain: String,
    pub trust: Trust,
}

/// A piece of the segment that already sits somewhere (a repair places around them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub domain: String,
    pub trust: Trust,
}

/// The rules a segment's placement keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Most pieces of one segment on strangers in one observed network.
    pub per_network: usize,
    /// Share (0 ..= 1) of segments in which one stranger in vetting gets a piece even though
    /// the segment could be placed without one: how new nodes earn their vetting audits.
    pub unvetted_share: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            per_network: 1,
            unvetted_share: 0.05,
        }
    }
}

/// Why a segment could not be placed: what it needed and what there was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a segment needs {needed} nodes with at most {per_network} piece(s) per observed network of \
     strangers and at most 1 on a node in vetting; placement could fill {placed}. Usable now: \
     {operator} operator-listed node(s), {vetted} vetted stranger(s) in {vetted_networks} \
     network(s), {unvetted} stranger(s) in vetting (they earn vetting through audits of the \
     pieces they are given)"
)]
pub struct Shortfall {
    pub needed: usize,
    pub placed: usize,
    pub per_network: usize,
    pub operator: usize,
    pub vetted: usize,
    pub vetted_networks: usize,
    pub unvetted: usize,
}

/// Most pieces of a segment on strangers in vetting.
const MAX_UNVETTED: usize = 1;

/// Where each piece of one segment goes, and what is left to replace a node that fails.
#[derive(Debug, Clone)]
pub struct Plan<N> {
    /// Candidates in score order.
    ranked: Vec<Candidate<N>>,
    /// Which candidates have been used (placed, or tried and failed).
    used: Vec<bool>,
    /// The candidate each piece goes to.
    slots: Vec<usize>,
    per_domain: HashMap<String, usize>,
    unvetted: usize,
    allow_unvetted: bool,
    rules: Rules,
}

impl<N: Clone + AsRef<[u8]>> Plan<N> {
    /// Places `count` pieces of the segment `seed` around the pieces `taken` already in place.
    pub fn new(
        candidates: &[Candidate<N>],
        seed: &[u8],
        count: usize,
        taken: &[Taken],
        rules: Rules,
    ) -> Result<Self, Shortfall> {
        let mut scored: Vec<(f64, &Candidate<N>)> = candidates
            .iter()
            .filter(|c| c.weight > 0)
            .map(|c| (score(seed, c.node.as_ref(), c.weight), c))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ranked: Vec<Candidate<N>> = scored.into_iter().map(|(_, c)| c.clone()).collect();
        let open = share_draw(seed) < rules.unvetted_share;
        // Unvetted nodes only where the share opens the segment to one, or where it cannot be
        // placed otherwise.
        let mut plan = Plan::start(&ranked, taken, rules, open);
        if !plan.fill(count, open) && !open {
            plan = Plan::start(&ranked, taken, rules, true);
            plan.fill(count, false);
        }
        if plan.slots.len() < count {
            return Err(plan.shortfall(count));
        }
        Ok(plan)
    }

    fn start(ranked: &[Candidate<N>], taken: &[Taken], rules: Rules, allow_unvetted: bool) -> Self {
        let mut plan = Plan {
            ranked: ranked.to_vec(),
            used: vec![false; ranked.len()],
            slots: Vec::new(),
            per_domain: HashMap::new(),
            unvetted: 0,
            allow_unvetted,
            rules,
        };
        for t in taken {
            plan.count_in(&t.domain, t.trust);
        }
        plan
    }

    /// Deals out pieces until there are `count`; with `reserve`, the first goes to the best
    /// admissible node in vetting, if there is one. `false` if too few nodes were admissible.
    fn fill(&mut self, count: usize, reserve: bool) -> bool {
        if reserve && self.slots.len() < count {
            if let Some(i) = (0..self.ranked.len())
                .find(|&i| self.ranked[i].trust == Trust::Unvetted && self.admits(i))
            {
                self.take(i);
            }
        }
        while self.slots.len() < count {
            match self.best() {
                Some(i) => self.take(i),
                None => return false,
            }
        }
        true
    }

    fn count_in(&mut self, domain: &str, trust: Trust) {
        *self.per_domain.entry(domain.to_string()).or_default() += 1;
        if trust == Trust::Unvetted {
            self.unvetted += 1;
        }
    }

    fn count_out(&mut self, i: usize) {
        let c = &self.ranked[i];
        if let Some(n) = self.per_domain.get_mut(&c.domain) {
            *n = n.saturating_sub(1);
        }
        if c.trust == Trust::Unvetted {
            self.unvetted = self.unvetted.saturating_sub(1);
        }
    }

    fn in_domain(&self, domain: &str) -> usize {
        self.per_domain.get(domain).copied().unwrap_or(0)
    }

    /// Whether the rules admit candidate `i` next.
    fn admits(&self, i: usize) -> bool {
        let c = &self.ranked[i];
        if self.used[i] {
            return false;
        }
        if c.trust.is_stranger() && self.in_domain(&c.domain) >= self.rules.per_network {
            return false;
        }
        c.trust != Trust::Unvetted || (self.allow_unvetted && self.unvetted < MAX_UNVETTED)
    }

    /// The admissible candidate whose domain holds the fewest pieces, best-scored first.
    fn best(&self) -> Option<usize> {
        (0..self.ranked.len())
            .filter(|&i| self.admits(i))
            .min_by_key(|&i| (self.in_domain(&self.ranked[i].domain), i))
    }

    fn take(&mut self, i: usize) {
        self.used[i] = true;
        let (domain, trust) = (self.ranked[i].domain.clone(), self.ranked[i].trust);
        self.count_in(&domain, trust);
        self.slots.push(i);
    }

    /// The node each piece goes to, in piece order.
    pub fn nodes(&self) -> Vec<N> {
        self.slots
            .iter()
            .map(|&i| self.ranked[i].node.clone())
            .collect()
    }

    /// The node piece `slot` goes to.
    pub fn node(&self, slot: usize) -> Option<N> {
        self.slots.get(slot).map(|&i| self.ranked[i].node.clone())
    }

    /// Piece `slot`'s node failed: the next node for it under the same rules (never one that
    /// was used before), or `None` if none is left.
    pub fn replace(&mut self, slot: usize) -> Option<N> {
        let current = *self.slots.get(slot)?;
        self.count_out(current);
        let next = self.best();
        match next {
            Some(i) => {
                self.used[i] = true;
                let (domain, trust) = (self.ranked[i].domain.clone(), self.ranked[i].trust);
                self.count_in(&domain, trust);
                self.slots[slot] = i;
                Some(self.ranked[i].node.clone())
            }
            None => {
                // The failed node keeps its place in the counts: nothing replaced it, and the
                // piece it was to take is simply missing.
                let (domain, trust) = (
                    self.ranked[current].domain.clone(),
                    self.ranked[current].trust,
                );
                self.count_in(&domain, trust);
                None
            }
        }
    }

    fn shortfall(&self, needed: usize) -> Shortfall {
        let count = |t: Trust| self.ranked.iter().filter(|c| c.trust == t).count();
        let mut networks: Vec<&str> = self
            .ranked
            .iter()
            .filter(|c| c.trust == Trust::Vetted)
            .map(|c| c.domain.as_str())
            .collect();
        networks.sort_unstable();
        networks.dedup();
        Shortfall {
            needed,
            placed: self.slots.len(),
            per_network: self.rules.per_network,
            operator: count(Trust::Operator),
            vetted: count(Trust::Vetted),
            vetted_networks: networks.len(),
            unvetted: count(Trust::Unvetted),
        }
    }
}

/// A uniform draw in [0, 1) from the segment's seed: whether it is one of the share of segments
/// open to a node in vetting.
fn share_draw(seed: &[u8]) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(b"unvetted share");
    h.update(seed);
    let mut word = [0u8; 8];
    word.copy_from_slice(&h.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// `-ln(u) / weight` with `u` uniform in (0, 1] from BLAKE3(seed, node).
fn score(seed: &[u8], node: &[u8], weight: u64) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&(seed.len() as u64).to_le_bytes());
    h.update(seed);
    h.update(node);
    let mut word = [0u8; 8];
    word.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // 53 random bits → (0, 1].
    let u = ((u64::from_le_bytes(word) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    // Weights in GiB keep the arithmetic well-conditioned; a node with less than that still
    // gets a (small) positive weight.
    let weight = (weight as f64 / (1u64 << 30) as f64).max(1e-6);
    -u.ln() / weight
}

#[cfg(test)]
mod tests;
