//! Where the pieces of a segment go: weighted rendezvous hashing over the usable nodes, spread
//! over failure domains.
//!
//! Every node gets a score from a hash of (segment seed, node id), scaled by its weight (its free
//! space, less for nodes in vetting): `-ln(u) / weight`, lowest first. Over many segments a node
//! is first in proportion to its weight, a node joining or leaving moves only the pieces it wins
//! or held, and the order is deterministic for a seed. The pieces are then dealt out greedily: each next piece goes to the
//! best-ranked node whose failure domain holds the fewest pieces of this segment so far, so a
//! segment spans as many domains as exist before any domain gets a second piece.

use std::collections::HashMap;

/// A node placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<N> {
    pub node: N,
    /// How strongly it is preferred: the bytes it can still take (scaled down for nodes in
    /// vetting). 0 excludes it.
    pub weight: u64,
    /// Its failure domain (e.g. region/zone/operator); equal strings share a fate.
    pub domain: String,
}

/// Orders `candidates` for a segment: the first `count` are where its pieces go (piece `i` to
/// entry `i`), the rest are spares in order of preference for pieces whose node fails.
pub fn rank<N: Clone + AsRef<[u8]>>(
    candidates: &[Candidate<N>],
    seed: &[u8],
    count: usize,
) -> Vec<N> {
    rank_around(candidates, seed, count, &[])
}

/// [`rank`] for pieces joining a segment whose other pieces already sit in the failure domains
/// `taken` (a repair): the spread counts those too.
pub fn rank_around<N: Clone + AsRef<[u8]>>(
    candidates: &[Candidate<N>],
    seed: &[u8],
    count: usize,
    taken: &[String],
) -> Vec<N> {
    let mut scored: Vec<(f64, &Candidate<N>)> = candidates
        .iter()
        .filter(|c| c.weight > 0)
        .map(|c| (score(seed, c.node.as_ref(), c.weight), c))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut per_domain: HashMap<&str, usize> = HashMap::new();
    for d in taken {
        *per_domain.entry(d.as_str()).or_default() += 1;
    }
    let mut chosen = Vec::with_capacity(scored.len());
    let mut rest: Vec<&Candidate<N>> = scored.into_iter().map(|(_, c)| c).collect();
    while chosen.len() < count && !rest.is_empty() {
        let fewest = rest
            .iter()
            .map(|c| per_domain.get(c.domain.as_str()).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        let Some(pos) = rest
            .iter()
            .position(|c| per_domain.get(c.domain.as_str()).copied().unwrap_or(0) == fewest)
        else {
            break;
        };
        let c = rest.remove(pos);
        *per_domain.entry(c.domain.as_str()).or_default() += 1;
        chosen.push(c.node.clone());
    }
    chosen.extend(rest.into_iter().map(|c| c.node.clone()));
    chosen
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
mod tests {
    use super::*;

    fn node(i: u32, free_gib: u64, domain: &str) -> Candidate<Vec<u8>> {
        Candidate {
            node: i.to_be_bytes().to_vec(),
            weight: free_gib << 30,
            domain: domain.into(),
        }
    }

    #[test]
    fn chooses_distinct_nodes_and_keeps_spares() {
        let nodes: Vec<_> = (0..10).map(|i| node(i, 100, "")).collect();
        let r = rank(&nodes, b"seg", 6);
        assert_eq!(r.len(), 10);
        let mut uniq = r.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 10);
        assert_eq!(r, rank(&nodes, b"seg", 6), "deterministic for a seed");
    }

    #[test]
    fn spreads_over_domains_before_doubling_up() {
        let mut nodes = Vec::new();
        for (i, zone) in ["a", "a", "a", "a", "b", "b", "c"].iter().enumerate() {
            nodes.push(node(i as u32, 100, zone));
        }
        for seed in 0..200u32 {
            let r = rank(&nodes, &seed.to_be_bytes(), 3);
            let zones: std::collections::BTreeSet<_> = r[..3]
                .iter()
                .map(|n| nodes.iter().find(|c| &c.node == n).unwrap().domain.clone())
                .collect();
            assert_eq!(zones.len(), 3, "three pieces, three zones");
        }
    }

    #[test]
    fn weight_follows_free_space_and_full_nodes_get_nothing() {
        let nodes = vec![node(0, 300, ""), node(1, 100, ""), node(2, 0, "")];
        let mut firsts = [0u32; 3];
        for seed in 0..4000u32 {
            let r = rank(&nodes, &seed.to_be_bytes(), 1);
            assert_eq!(r.len(), 2, "the full node is never ranked");
            firsts[usize::from(r[0][3])] += 1;
        }
        // Expected 3:1.
        assert!((2700..3300).contains(&firsts[0]), "{firsts:?}");
        assert_eq!(firsts[2], 0);
    }
}
