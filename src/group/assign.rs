//! Assignment strategies: who should consume which partition.
//!
//! Owns: `target_assignment`, a pure, deterministic function from the
//! members' resolved subscriptions, the partition counts and the previous
//! target to the new target. Range and RoundRobin follow Kafka's
//! `RangeAssignor` and `RoundRobinAssignor`; Sticky keeps what it can and
//! stays balanced.
//!
//! Must never: assign a partition to two members, assign a partition to a
//! member not subscribed to its topic, leave a subscribed partition
//! unassigned, or depend on anything but its arguments (map order is the
//! only order used, so every broker computes the same answer).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::ids::{MemberId, TopicPartition};

/// How a group spreads partitions over its members. Fixed by the group's
/// first member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Per topic, consecutive ranges; the first members (by id) get one more.
    Range,
    /// All partitions of all topics in (topic, partition) order, dealt to the
    /// members in id order, skipping members not subscribed to the topic.
    RoundRobin,
    /// Keeps each member's previous partitions within its fair share; moves
    /// only what balance requires.
    Sticky,
}

impl Strategy {
    /// Used when the first member names none: moving the fewest partitions
    /// is what an incremental protocol wants (KIP-848's default "uniform"
    /// assignor is sticky too).
    pub const DEFAULT: Strategy = Strategy::Sticky;

    /// The wire names: `range`, `roundrobin`, `sticky`.
    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "range" => Some(Strategy::Range),
            "roundrobin" => Some(Strategy::RoundRobin),
            "sticky" => Some(Strategy::Sticky),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::RoundRobin => "roundrobin",
            Strategy::Sticky => "sticky",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The target assignment: every member of `members` gets an entry (maybe
/// empty); every partition of every topic in `partitions` that some member
/// subscribes to goes to exactly one member subscribed to it. Topics a
/// member names that are not in `partitions` are ignored. `previous` is used
/// by `Sticky` only (entries for members that left or partitions that no
/// longer exist are ignored).
pub fn target_assignment(
    strategy: Strategy,
    members: &BTreeMap<MemberId, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<MemberId, BTreeSet<TopicPartition>>,
) -> BTreeMap<MemberId, BTreeSet<TopicPartition>> {
    let ids: Vec<&MemberId> = members.keys().collect();
    // Subscribers of each existing, non-empty topic, as indexes into `ids`
    // (so in member id order).
    let mut subscribers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, topics) in members.values().enumerate() {
        for t in topics {
            if partitions.get(t).is_some_and(|&n| n > 0) {
                subscribers.entry(t.as_str()).or_default().push(i);
            }
        }
    }
    let mut out: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); ids.len()];
    match strategy {
        Strategy::Range => range(&subscribers, partitions, &mut out),
        Strategy::RoundRobin => round_robin(members, &subscribers, partitions, &mut out),
        Strategy::Sticky => sticky(&ids, &subscribers, partitions, previous, &mut out),
    }
    let out: BTreeMap<MemberId, BTreeSet<TopicPartition>> =
        ids.into_iter().cloned().zip(out).collect();
    debug_assert_eq!(check_assignment(members, partitions, &out), Ok(()));
    out
}

/// Kafka's RangeAssignor: per topic, n partitions over k subscribers in id
/// order; each gets n / k consecutive partitions, the first n % k one more.
fn range(
    subscribers: &BTreeMap<&str, Vec<usize>>,
    partitions: &BTreeMap<String, u32>,
    out: &mut [BTreeSet<TopicPartition>],
) {
    for (&topic, subs) in subscribers {
        let n = partitions[topic];
        let k = subs.len() as u32;
        let (share, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, &m) in subs.iter().enumerate() {
            let take = share + u32::from((i as u32) < extra);
            out[m].extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
            next += take;
        }
        assert_eq!(next, n, "range covers the topic");
    }
}

/// Kafka's RoundRobinAssignor: one circular walk over the members in id
/// order; each partition (topic order, then partition order) goes to the next
/// member subscribed to its topic.
fn round_robin(
    members: &BTreeMap<MemberId, BTreeSet<String>>,
    subscribers: &BTreeMap<&str, Vec<usize>>,
    partitions: &BTreeMap<String, u32>,
    out: &mut [BTreeSet<TopicPartition>],
) {
    let topics: Vec<&BTreeSet<String>> = members.values().collect();
    let mut next = 0usize;
    for &topic in subscribers.keys() {
        for p in 0..partitions[topic] {
            // Terminates within one lap: the topic has a subscriber.
            while !topics[next % topics.len()].contains(topic) {
                next += 1;
            }
            out[next % topics.len()].insert(TopicPartition::new(topic, p));
            next += 1;
        }
    }
}

/// Sticky: (1) every member keeps its previous, still valid partitions up to
/// its fair share, (2) the rest go to the least-loaded eligible member, (3)
/// while some member holds two more than another member that could take one
/// of its partitions, one moves (the sum of squared loads falls each time, so
/// this ends). Step 3 makes members with identical subscriptions differ by
/// at most one; with identical subscriptions steps 1-2 already do, so only
/// the partitions balance requires move.
///
/// Fair share of member m: P_m / N_m, where P_m counts the partitions of its
/// topics and N_m the members subscribed to any of them. Everyone keeps up to
/// the floor; members whose share has a remainder may keep one more, first
/// come (id order) while the remainder of their subscription class lasts.
/// With identical subscriptions this is exactly Kafka's constrained sticky
/// quota (min quota, and P % M members at min + 1).
fn sticky(
    ids: &[&MemberId],
    subscribers: &BTreeMap<&str, Vec<usize>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<MemberId, BTreeSet<TopicPartition>>,
    out: &mut [BTreeSet<TopicPartition>],
) {
    let n_members = ids.len();
    let mut topics_of: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); n_members];
    for (&t, subs) in subscribers {
        for &m in subs {
            topics_of[m].insert(t);
        }
    }
    let eligible = |m: usize, tp: &TopicPartition| {
        topics_of[m].contains(tp.topic.as_str()) && tp.partition < partitions[&tp.topic]
    };
    // Per subscription class (members with the same topics): (floor of the
    // fair share, remainder left to hand out as "one more").
    let mut class: BTreeMap<&BTreeSet<&str>, (usize, usize)> = BTreeMap::new();
    for topics in topics_of.iter().filter(|t| !t.is_empty()) {
        class.entry(topics).or_insert_with(|| {
            let p_m: usize = topics.iter().map(|t| partitions[*t] as usize).sum();
            let n_m = topics
                .iter()
                .flat_map(|t| subscribers[t].iter())
                .collect::<BTreeSet<_>>()
                .len();
            (p_m / n_m, p_m % n_m)
        });
    }
    let floor: Vec<usize> = topics_of
        .iter()
        .map(|t| class.get(t).map_or(0, |c| c.0))
        .collect();
    let mut class_extra: BTreeMap<&BTreeSet<&str>, usize> =
        class.iter().map(|(t, c)| (*t, c.1)).collect();

    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    let mut keepable: Vec<Vec<TopicPartition>> = vec![Vec::new(); n_members];
    for (m, id) in ids.iter().enumerate() {
        if let Some(prev) = previous.get(*id) {
            keepable[m] = prev.iter().filter(|tp| eligible(m, tp)).cloned().collect();
        }
    }
    {
        let mut keep = |m: usize, tp: &TopicPartition, out: &mut [BTreeSet<TopicPartition>]| {
            if owner.contains_key(tp) {
                return false; // `previous` named it twice; the first keeps it.
            }
            owner.insert(tp.clone(), m);
            out[m].insert(tp.clone());
            true
        };
        // (1a) keep up to the floor of the fair share.
        let mut cursor = vec![0usize; n_members];
        for m in 0..n_members {
            while out[m].len() < floor[m] && cursor[m] < keepable[m].len() {
                keep(m, &keepable[m][cursor[m]], out);
                cursor[m] += 1;
            }
        }
        // (1b) one more while the class's remainder lasts.
        for m in 0..n_members {
            let Some(extra) = class_extra.get_mut(&topics_of[m]) else {
                continue;
            };
            while *extra > 0 && cursor[m] < keepable[m].len() {
                let kept = keep(m, &keepable[m][cursor[m]], out);
                cursor[m] += 1;
                if kept {
                    *extra -= 1;
                    break;
                }
            }
        }
    }

    // (2) the rest, most constrained partitions first, to the least loaded;
    // ties go to the previous owner, then to the lowest id.
    let prev_owner: BTreeMap<&TopicPartition, usize> = ids
        .iter()
        .enumerate()
        .filter_map(|(m, id)| previous.get(*id).map(|s| (m, s)))
        .flat_map(|(m, s)| s.iter().map(move |tp| (tp, m)))
        .collect();
    let mut rest: Vec<TopicPartition> = subscribers
        .keys()
        .flat_map(|&t| (0..partitions[t]).map(move |p| TopicPartition::new(t, p)))
        .filter(|tp| !owner.contains_key(tp))
        .collect();
    rest.sort_by_cached_key(|tp| (subscribers[tp.topic.as_str()].len(), tp.clone()));
    for tp in rest {
        let subs = &subscribers[tp.topic.as_str()];
        let prev = prev_owner.get(&tp).copied();
        let m = *subs
            .iter()
            .min_by_key(|&&m| (out[m].len(), prev != Some(m), m))
            .expect("a topic in `subscribers` has one");
        out[m].insert(tp);
    }

    // (3) rebalance pairs that can trade (only mixed subscriptions need it).
    // Each round moves one partition from the most loaded member that can
    // give one away to the least loaded member that can take it.
    let eligible_members: Vec<usize> = (0..n_members)
        .filter(|&m| !topics_of[m].is_empty())
        .collect();
    loop {
        let Some(min_load) = eligible_members.iter().map(|&m| out[m].len()).min() else {
            return;
        };
        let mut by_load = eligible_members.clone();
        by_load.sort_by_key(|&m| (std::cmp::Reverse(out[m].len()), m));
        let mut step = None;
        for &a in &by_load {
            if out[a].len() < min_load + 2 {
                break; // nobody further down can give to anyone
            }
            let held: BTreeSet<&str> = out[a].iter().map(|tp| tp.topic.as_str()).collect();
            // The least loaded taker of any topic `a` holds (load, id, topic).
            let best = held
                .into_iter()
                .filter_map(|t| {
                    let b = subscribers[t]
                        .iter()
                        .copied()
                        .filter(|&b| b != a)
                        .min_by_key(|&b| (out[b].len(), b))?;
                    Some((out[b].len(), b, t))
                })
                .min();
            if let Some((load_b, b, t)) = best {
                if load_b + 2 <= out[a].len() {
                    // Move a partition `a` did not have before, if any:
                    // keeps stickiness.
                    let prev_a = previous.get(ids[a]);
                    let tp = out[a]
                        .iter()
                        .filter(|tp| tp.topic == t)
                        .min_by_key(|tp| (prev_a.is_some_and(|s| s.contains(*tp)), *tp))
                        .cloned()
                        .expect("`a` holds a partition of t");
                    step = Some((a, b, tp));
                    break;
                }
            }
        }
        let Some((a, b, tp)) = step else { return };
        out[a].remove(&tp);
        out[b].insert(tp);
    }
}

/// Checks the rules every strategy obeys; Err says which one broke.
pub fn check_assignment(
    members: &BTreeMap<MemberId, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    assignment: &BTreeMap<MemberId, BTreeSet<TopicPartition>>,
) -> Result<(), String> {
    if !members.keys().eq(assignment.keys()) {
        return Err("the assignment's members differ from the group's".into());
    }
    let mut seen = BTreeSet::new();
    for (m, tps) in assignment {
        for tp in tps {
            if !members[m].contains(&tp.topic) {
                return Err(format!("{tp} given to {m}, not subscribed"));
            }
            if tp.partition >= partitions.get(&tp.topic).copied().unwrap_or(0) {
                return Err(format!("{tp} does not exist"));
            }
            if !seen.insert(tp) {
                return Err(format!("{tp} given twice"));
            }
        }
    }
    for (t, &n) in partitions {
        if members.values().any(|s| s.contains(t)) {
            for p in 0..n {
                if !seen.contains(&TopicPartition::new(t.as_str(), p)) {
                    return Err(format!("{t}-{p} unassigned"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<MemberId, BTreeSet<String>> {
        spec.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn topics(spec: &[(&str, u32)]) -> BTreeMap<String, u32> {
        spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn tps(spec: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
        spec.iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect()
    }

    fn loads(a: &BTreeMap<MemberId, BTreeSet<TopicPartition>>) -> Vec<usize> {
        a.values().map(|s| s.len()).collect()
    }

    const ALL: [Strategy; 3] = [Strategy::Range, Strategy::RoundRobin, Strategy::Sticky];

    #[test]
    fn strategy_names_round_trip() {
        for s in ALL {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::parse("cooperative-sticky"), None);
    }

    #[test]
    fn three_members_over_six_partitions_get_two_each() {
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        for s in ALL {
            let a = target_assignment(s, &m, &topics(&[("t", 6)]), &BTreeMap::new());
            assert_eq!(loads(&a), vec![2, 2, 2], "{s}");
        }
    }

    #[test]
    fn range_gives_consecutive_ranges_first_members_get_the_extra() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"])]);
        let a = target_assignment(
            Strategy::Range,
            &m,
            &topics(&[("t", 3), ("u", 3)]),
            &BTreeMap::new(),
        );
        // Kafka's known imbalance: the extra of every topic goes to "a".
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 1), ("u", 0), ("u", 1)]));
        assert_eq!(a["b"], tps(&[("t", 2), ("u", 2)]));
    }

    #[test]
    fn round_robin_deals_in_order_skipping_unsubscribed() {
        let m = members(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["u"])]);
        let a = target_assignment(
            Strategy::RoundRobin,
            &m,
            &topics(&[("t", 3), ("u", 2)]),
            &BTreeMap::new(),
        );
        // t0->a t1->b t2->a (c skipped) u0->b u1->c
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 2)]));
        assert_eq!(a["b"], tps(&[("t", 1), ("u", 0)]));
        assert_eq!(a["c"], tps(&[("u", 1)]));
    }

    #[test]
    fn unknown_topics_and_empty_subscriptions_get_nothing() {
        let m = members(&[("a", &["missing"]), ("b", &[]), ("c", &["t"])]);
        for s in ALL {
            let a = target_assignment(s, &m, &topics(&[("t", 2)]), &BTreeMap::new());
            assert_eq!(loads(&a), vec![0, 0, 2], "{s}");
        }
    }

    #[test]
    fn sticky_joiner_takes_only_what_balance_requires() {
        let m2 = members(&[("a", &["t"]), ("b", &["t"])]);
        let t = topics(&[("t", 6)]);
        let before = target_assignment(Strategy::Sticky, &m2, &t, &BTreeMap::new());
        let m3 = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let after = target_assignment(Strategy::Sticky, &m3, &t, &before);
        assert!(after["a"].is_subset(&before["a"]));
        assert!(after["b"].is_subset(&before["b"]));
        assert_eq!(loads(&after), vec![2, 2, 2]);
    }

    #[test]
    fn sticky_balances_mixed_subscriptions() {
        // "a" could hog all of t; balance moves some to "b".
        let m = members(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["u"])]);
        let t = topics(&[("t", 4), ("u", 2)]);
        let prev = BTreeMap::from([("a".to_string(), tps(&[("t", 0), ("t", 1), ("t", 2)]))]);
        let a = target_assignment(Strategy::Sticky, &m, &t, &prev);
        assert_eq!(loads(&a), vec![2, 2, 2]);
        assert!(a["a"].is_subset(&prev["a"]));
    }

    /// A random group: up to 6 members over up to 4 topics of 0..12 partitions.
    fn arb_group() -> impl proptest::strategy::Strategy<
        Value = (BTreeMap<MemberId, BTreeSet<String>>, BTreeMap<String, u32>),
    > {
        (
            proptest::collection::vec(proptest::collection::btree_set(0..4u8, 0..4), 1..7),
            proptest::collection::vec(0..12u32, 4),
        )
            .prop_map(|(subs, counts)| {
                let members = subs
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| {
                        (
                            format!("m{i}"),
                            s.into_iter().map(|t| format!("t{t}")).collect(),
                        )
                    })
                    .collect();
                let partitions = counts
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 3) // t3: subscribed to but missing
                    .map(|(i, n)| (format!("t{i}"), n))
                    .collect();
                (members, partitions)
            })
    }

    fn uniform(
        n_members: usize,
        n_partitions: u32,
    ) -> (BTreeMap<MemberId, BTreeSet<String>>, BTreeMap<String, u32>) {
        let members = (0..n_members)
            .map(|i| (format!("m{i}"), BTreeSet::from(["t".to_string()])))
            .collect();
        (members, topics(&[("t", n_partitions)]))
    }

    /// Members with identical subscriptions differ by at most one partition.
    fn balanced(
        members: &BTreeMap<MemberId, BTreeSet<String>>,
        a: &BTreeMap<MemberId, BTreeSet<TopicPartition>>,
    ) -> bool {
        let mut by_class: BTreeMap<&BTreeSet<String>, Vec<usize>> = BTreeMap::new();
        for (m, s) in members {
            by_class.entry(s).or_default().push(a[m].len());
        }
        by_class
            .values()
            .all(|l| l.iter().max().unwrap() - l.iter().min().unwrap() <= 1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn every_strategy_assigns_each_subscribed_partition_exactly_once(
            (members, partitions) in arb_group(),
            prev_seed in proptest::collection::vec((0..7usize, 0..4u8, 0..12u32), 0..20),
        ) {
            let mut previous: BTreeMap<MemberId, BTreeSet<TopicPartition>> = BTreeMap::new();
            for (m, t, p) in prev_seed {
                previous.entry(format!("m{m}")).or_default().insert(TopicPartition::new(format!("t{t}"), p));
            }
            for s in ALL {
                let a = target_assignment(s, &members, &partitions, &previous);
                prop_assert_eq!(check_assignment(&members, &partitions, &a), Ok(()));
                prop_assert_eq!(&a, &target_assignment(s, &members, &partitions, &previous));
            }
        }

        #[test]
        fn sticky_and_round_robin_balance_identical_subscriptions((members, partitions) in arb_group()) {
            let a = target_assignment(Strategy::Sticky, &members, &partitions, &BTreeMap::new());
            prop_assert!(balanced(&members, &a), "{:?}", a);
            // Round robin balances overall when everyone subscribes to the same.
            let same: BTreeMap<_, _> = members.keys().map(|m| (m.clone(), members.values().next().unwrap().clone())).collect();
            let a = target_assignment(Strategy::RoundRobin, &same, &partitions, &BTreeMap::new());
            prop_assert!(balanced(&same, &a), "{:?}", a);
        }

        #[test]
        fn sticky_stays_balanced_from_any_previous(
            (members, partitions) in arb_group(),
            prev_seed in proptest::collection::vec((0..7usize, 0..4u8, 0..12u32), 0..30),
        ) {
            let mut previous: BTreeMap<MemberId, BTreeSet<TopicPartition>> = BTreeMap::new();
            for (m, t, p) in prev_seed {
                previous.entry(format!("m{m}")).or_default().insert(TopicPartition::new(format!("t{t}"), p));
            }
            let a = target_assignment(Strategy::Sticky, &members, &partitions, &previous);
            prop_assert!(balanced(&members, &a), "{:?}", a);
        }

        #[test]
        fn sticky_join_moves_only_to_the_joiner(n in 1..8usize, p in 0..40u32) {
            let (before_m, t) = uniform(n, p);
            let before = target_assignment(Strategy::Sticky, &before_m, &t, &BTreeMap::new());
            let (after_m, _) = uniform(n + 1, p);
            let after = target_assignment(Strategy::Sticky, &after_m, &t, &before);
            for (m, s) in &before {
                prop_assert!(after[m].is_subset(s), "{} gained a partition", m);
            }
            let joiner = format!("m{n}");
            let moved: usize = before.iter().map(|(m, s)| s.difference(&after[m]).count()).sum();
            prop_assert_eq!(moved, after[&joiner].len());
            prop_assert_eq!(after[&joiner].len(), p as usize / (n + 1));
        }

        #[test]
        fn sticky_leave_moves_only_the_leavers_partitions(n in 2..8usize, p in 0..40u32, leaver in 0..8usize) {
            let (before_m, t) = uniform(n, p);
            let before = target_assignment(Strategy::Sticky, &before_m, &t, &BTreeMap::new());
            let mut after_m = before_m.clone();
            let leaver = format!("m{}", leaver % n);
            after_m.remove(&leaver);
            let after = target_assignment(Strategy::Sticky, &after_m, &t, &before);
            for (m, s) in &after {
                prop_assert!(s.is_superset(&before[m]), "{} lost a partition", m);
            }
            prop_assert!(balanced(&after_m, &after));
        }
    }
}
