use std::collections::{BTreeSet, HashMap};

use super::*;

fn node(i: u32, free_gib: u64, domain: &str, trust: Trust) -> Candidate<Vec<u8>> {
    Candidate {
        node: i.to_be_bytes().to_vec(),
        weight: free_gib << 30,
        domain: domain.into(),
        trust,
    }
}

fn operator(i: u32, domain: &str) -> Candidate<Vec<u8>> {
    node(i, 100, domain, Trust::Operator)
}

fn plan(nodes: &[Candidate<Vec<u8>>], seed: u32, count: usize) -> Result<Plan<Vec<u8>>, Shortfall> {
    Plan::new(nodes, &seed.to_be_bytes(), count, &[], Rules::default())
}

/// Checks the rules on one placement: distinct nodes, at most one piece per strangers'
/// network, at most one on a node in vetting.
fn check(nodes: &[Candidate<Vec<u8>>], chosen: &[Vec<u8>], per_network: usize) {
    let by_id: HashMap<&Vec<u8>, &Candidate<Vec<u8>>> =
        nodes.iter().map(|c| (&c.node, c)).collect();
    let distinct: BTreeSet<_> = chosen.iter().collect();
    assert_eq!(distinct.len(), chosen.len(), "distinct nodes");
    let mut per: HashMap<&str, usize> = HashMap::new();
    let mut unvetted = 0;
    for n in chosen {
        let c = by_id[n];
        if c.trust != Trust::Operator {
            *per.entry(c.domain.as_str()).or_default() += 1;
        }
        unvetted += usize::from(c.trust == Trust::Unvetted);
    }
    assert!(per.values().all(|&n| n <= per_network), "{per:?}");
    assert!(unvetted <= 1, "{unvetted} pieces on nodes in vetting");
}

#[test]
fn chooses_distinct_nodes_deterministically() {
    let nodes: Vec<_> = (0..10).map(|i| operator(i, "")).collect();
    let p = plan(&nodes, 7, 6).unwrap();
    assert_eq!(p.nodes().len(), 6);
    check(&nodes, &p.nodes(), 1);
    assert_eq!(
        p.nodes(),
        plan(&nodes, 7, 6).unwrap().nodes(),
        "deterministic for a seed"
    );
}

#[test]
fn spreads_over_operator_domains_before_doubling_up() {
    let mut nodes = Vec::new();
    for (i, zone) in ["a", "a", "a", "a", "b", "b", "c"].iter().enumerate() {
        nodes.push(operator(i as u32, zone));
    }
    for seed in 0..200u32 {
        let p = plan(&nodes, seed, 6).unwrap();
        let zones: Vec<_> = p
            .nodes()
            .iter()
            .map(|n| nodes.iter().find(|c| &c.node == n).unwrap().domain.clone())
            .collect();
        let first: BTreeSet<_> = zones[..3].iter().collect();
        assert_eq!(first.len(), 3, "three pieces, three zones: {zones:?}");
        let count = |z: &str| zones.iter().filter(|d| *d == z).count();
        assert_eq!((count("a"), count("b"), count("c")), (3, 2, 1));
    }
}

#[test]
fn weight_follows_free_space_and_weightless_nodes_get_nothing() {
    let nodes = vec![
        node(0, 300, "", Trust::Operator),
        node(1, 100, "", Trust::Operator),
        node(2, 0, "", Trust::Operator),
    ];
    let mut firsts = [0u32; 3];
    for seed in 0..4000u32 {
        let p = plan(&nodes, seed, 1).unwrap();
        firsts[usize::from(p.nodes()[0][3])] += 1;
    }
    // Expected 3:1.
    assert!((2700..3300).contains(&firsts[0]), "{firsts:?}");
    assert_eq!(firsts[2], 0);
    assert!(
        plan(&nodes, 1, 3).is_err(),
        "the weightless node is never placed on"
    );
}

#[test]
fn a_crowd_behind_one_network_counts_as_one_node() {
    // Four operator nodes, and sixty strangers with made-up identities behind two networks,
    // half of them vetted (they passed audits), none with better claims than the rest.
    let mut nodes: Vec<_> = (0..4).map(|i| operator(i, &format!("op{i}"))).collect();
    for i in 0..30 {
        nodes.push(node(100 + i, 1000, "net:198.51.100.0/24", Trust::Vetted));
        nodes.push(node(200 + i, 1000, "net:203.0.113.0/24", Trust::Unvetted));
    }
    for seed in 0..1000u32 {
        let p = plan(&nodes, seed, 6).unwrap();
        let chosen = p.nodes();
        check(&nodes, &chosen, 1);
        let strangers = chosen.iter().filter(|n| n[3] >= 100).count();
        assert!(strangers <= 2, "the crowd took {strangers} of 6 pieces");
    }
}

#[test]
fn strangers_in_vetting_get_their_share_of_segments_and_no_more() {
    let mut nodes: Vec<_> = (0..6).map(|i| operator(i, &format!("op{i}"))).collect();
    for i in 0..10 {
        nodes.push(node(
            100 + i,
            1000,
            &format!("net:10.{i}.0.0/24"),
            Trust::Unvetted,
        ));
    }
    let trials = 4000u32;
    let mut with_new = 0;
    for seed in 0..trials {
        let p = plan(&nodes, seed, 6).unwrap();
        check(&nodes, &p.nodes(), 1);
        with_new += u32::from(p.nodes().iter().any(|n| n[3] >= 100));
    }
    // 5 % of 4000 = 200 (σ ≈ 14).
    assert!(
        (140..260).contains(&with_new),
        "{with_new} of {trials} segments"
    );
    let none = Rules {
        unvetted_share: 0.0,
        ..Rules::default()
    };
    for seed in 0..200u32 {
        let p = Plan::new(&nodes, &seed.to_be_bytes(), 6, &[], none).unwrap();
        assert!(p.nodes().iter().all(|n| n[3] < 100), "share 0: none");
    }
}

#[test]
fn a_young_network_takes_one_new_node_where_it_must_and_refuses_beyond_that() {
    // Five vetted strangers in five networks and three new ones: every segment of six needs
    // exactly one new node.
    let mut nodes: Vec<_> = (0..5)
        .map(|i| node(i, 100, &format!("net:10.0.{i}.0/24"), Trust::Vetted))
        .collect();
    for i in 0..3 {
        nodes.push(node(
            100 + i,
            100,
            &format!("net:10.1.{i}.0/24"),
            Trust::Unvetted,
        ));
    }
    for seed in 0..300u32 {
        let p = plan(&nodes, seed, 6).unwrap();
        check(&nodes, &p.nodes(), 1);
        assert_eq!(p.nodes().iter().filter(|n| n[3] >= 100).count(), 1);
    }
    // Four vetted: two new nodes would be needed, which is refused, saying why.
    nodes.remove(0);
    let err = plan(&nodes, 1, 6).unwrap_err();
    assert_eq!(
        (err.needed, err.placed, err.vetted, err.unvetted),
        (6, 5, 4, 3)
    );
    let text = err.to_string();
    assert!(
        text.contains("4 vetted stranger(s) in 4 network(s)"),
        "{text}"
    );
    // Only strangers in vetting: nothing can be placed.
    let fresh: Vec<_> = (0..10)
        .map(|i| node(i, 100, &format!("net:10.2.{i}.0/24"), Trust::Unvetted))
        .collect();
    assert_eq!(plan(&fresh, 1, 6).unwrap_err().placed, 1);
}

#[test]
fn a_replacement_keeps_the_rules_and_never_reuses_a_node() {
    let mut nodes: Vec<_> = (0..3).map(|i| operator(i, &format!("op{i}"))).collect();
    for i in 0..6 {
        nodes.push(node(
            100 + i,
            100,
            &format!("net:10.0.{}.0/24", i / 2),
            Trust::Vetted,
        ));
        nodes.push(node(
            200 + i,
            100,
            &format!("net:10.1.{i}.0/24"),
            Trust::Unvetted,
        ));
    }
    for seed in 0..300u32 {
        let mut p = plan(&nodes, seed, 6).unwrap();
        let mut tried: BTreeSet<Vec<u8>> = p.nodes().into_iter().collect();
        // Every piece's node fails once, then piece 0's fails until nothing is left.
        for slot in 0..6 {
            if let Some(n) = p.replace(slot) {
                assert!(tried.insert(n), "a node was used twice");
            }
            check(&nodes, &p.nodes(), 1);
        }
        while let Some(n) = p.replace(0) {
            assert!(tried.insert(n), "a node was used twice");
            check(&nodes, &p.nodes(), 1);
        }
    }
}

#[test]
fn a_repair_places_around_the_pieces_in_place() {
    let mut nodes = Vec::new();
    for i in 0..4 {
        nodes.push(node(i, 100, &format!("net:10.0.{i}.0/24"), Trust::Vetted));
        nodes.push(node(
            100 + i,
            100,
            &format!("net:10.1.{i}.0/24"),
            Trust::Unvetted,
        ));
    }
    // Four healthy pieces, one of them on a new node in 10.1.0.0/24 and one in 10.0.0.0/24.
    let taken = [
        Taken {
            domain: "net:10.0.0.0/24".into(),
            trust: Trust::Vetted,
        },
        Taken {
            domain: "net:10.1.0.0/24".into(),
            trust: Trust::Unvetted,
        },
        Taken {
            domain: "net:10.9.0.0/24".into(),
            trust: Trust::Vetted,
        },
        Taken {
            domain: "net:10.9.1.0/24".into(),
            trust: Trust::Vetted,
        },
    ];
    let others: Vec<_> = nodes
        .iter()
        .filter(|c| c.node[3] != 0 && c.node[3] != 100)
        .cloned()
        .collect();
    for seed in 0..100u32 {
        let p = Plan::new(&others, &seed.to_be_bytes(), 2, &taken, Rules::default()).unwrap();
        for n in p.nodes() {
            let c = others.iter().find(|c| c.node == n).unwrap();
            assert_eq!(
                c.trust,
                Trust::Vetted,
                "the segment has its new node already"
            );
        }
    }
}
