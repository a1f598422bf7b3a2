#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::Labels;

fn meta(family: &str, kind: MetricType) -> Arc<MetricMeta> {
    Arc::new(MetricMeta::new(family, kind))
}

fn sample(meta: &Arc<MetricMeta>, name: &str, labels: &[(&str, &str)]) -> Metric {
    Metric {
        name: Arc::from(name),
        labels: Labels::from_pairs(labels.iter().copied()),
        value: 1.0,
        timestamp_ms: 0,
        meta: meta.clone(),
        exemplar: None,
    }
}

/// A histogram family `req_seconds` with two series of buckets.
fn histogram() -> Vec<Metric> {
    let m = meta("req_seconds", MetricType::Histogram);
    vec![
        sample(&m, "req_seconds_bucket", &[("le", "1")]),
        sample(&m, "req_seconds_bucket", &[("le", "+Inf")]),
        sample(&m, "req_seconds_sum", &[]),
        sample(&m, "req_seconds_count", &[]),
    ]
}

fn names(batch: &[Metric]) -> Vec<&str> {
    batch.iter().map(|m| &*m.name).collect()
}

#[test]
fn a_gate_notes_families_with_their_series_and_sources() {
    let families = MetricFamilies::default();
    let mut a = families.gate("scrape");
    let mut b = families.gate("health");
    let mut batch = histogram();
    let temp =
        Arc::new(MetricMeta::new("temp_celsius", MetricType::Gauge).with_help("Temperature."));
    batch.push(sample(&temp, "temp_celsius", &[("sensor", "s1")]));
    assert_eq!(a.admit(&mut batch), 0);
    // The same series again counts once; another source adds its own.
    assert_eq!(a.admit(&mut histogram()), 0);
    let mut other = vec![sample(&temp, "temp_celsius", &[("sensor", "s2")])];
    assert_eq!(b.admit(&mut other), 0);
    assert_eq!(
        families.list(),
        [
            FamilyInfo {
                name: "req_seconds".into(),
                kind: MetricType::Histogram,
                help: None,
                unit: None,
                series: 4,
                components: vec!["scrape".into()],
                state: FamilyState::Active,
            },
            FamilyInfo {
                name: "temp_celsius".into(),
                kind: MetricType::Gauge,
                help: Some("Temperature.".into()),
                unit: None,
                series: 2,
                components: vec!["health".into(), "scrape".into()],
                state: FamilyState::Active,
            },
        ]
    );
}

#[test]
fn a_counter_family_is_listed_without_total_however_its_source_named_it() {
    let families = MetricFamilies::default();
    let mut gate = families.gate("src");
    let with_total = meta("jobs_total", MetricType::Counter);
    let without = meta("tasks", MetricType::Counter);
    let mut batch = vec![
        sample(&with_total, "jobs_total", &[]),
        sample(&without, "tasks_total", &[]),
    ];
    gate.admit(&mut batch);
    let listed: Vec<String> = families.list().into_iter().map(|f| f.name).collect();
    assert_eq!(listed, ["jobs", "tasks"]);
}

#[test]
fn a_retired_family_is_removed_at_the_gate_with_every_sample_of_it() {
    let families = MetricFamilies::default();
    let mut gate = families.gate("src");
    let mut first = histogram();
    gate.admit(&mut first);
    let retired = families.retire("req_seconds").unwrap();
    assert_eq!(retired.state, FamilyState::Retired);
    assert_eq!(retired.components, ["src"]);

    let up = meta("up", MetricType::Gauge);
    let mut batch = histogram();
    batch.push(sample(&up, "up", &[]));
    assert_eq!(gate.admit(&mut batch), 4);
    assert_eq!(names(&batch), ["up"]);

    // Enabled again, it flows.
    assert_eq!(
        families.enable("req_seconds").unwrap().state,
        FamilyState::Active
    );
    let mut again = histogram();
    assert_eq!(gate.admit(&mut again), 0);
    assert_eq!(again.len(), 4);
    assert_eq!(
        families.get("req_seconds").unwrap().state,
        FamilyState::Active
    );
}

#[test]
fn samples_without_a_family_of_their_own_match_a_retired_family_by_suffix() {
    let families = MetricFamilies::default();
    families.restore([RetiredFamily {
        name: "req_seconds".into(),
        kind: MetricType::Histogram,
        help: None,
        unit: None,
        components: vec![],
    }]);
    let retired = families.retired().unwrap();
    // A remote-write series: its name is its family, its type unknown.
    let bare = |name: &str, kind| Metric::new(name, kind, Labels::empty(), 1.0, 0);
    for name in [
        "req_seconds",
        "req_seconds_bucket",
        "req_seconds_sum",
        "req_seconds_count",
        "req_seconds_total",
        "req_seconds_created",
    ] {
        assert!(retired.covers(&bare(name, MetricType::Unknown)), "{name}");
    }
    assert!(retired.covers(&bare("req_seconds_total", MetricType::Counter)));
    // A gauge of its own, and names that only share a prefix.
    assert!(!retired.covers(&bare("req_seconds_count", MetricType::Gauge)));
    assert!(!retired.covers(&bare("req_seconds_max", MetricType::Unknown)));
    assert!(!retired.covers(&bare("req_seconds2_sum", MetricType::Unknown)));
    // A sample whose source named another family is judged by that family.
    let other = meta("req_seconds_count", MetricType::Summary);
    assert!(!retired.covers(&sample(&other, "req_seconds_count_sum", &[])));
}

#[test]
fn a_counter_retired_by_its_listed_name_covers_both_namings_of_its_family() {
    let families = MetricFamilies::default();
    let mut gate = families.gate("src");
    gate.admit(&mut vec![sample(
        &meta("jobs_total", MetricType::Counter),
        "jobs_total",
        &[],
    )]);
    families.retire("jobs").unwrap();
    let mut batch = vec![
        sample(&meta("jobs_total", MetricType::Counter), "jobs_total", &[]),
        sample(&meta("jobs", MetricType::Counter), "jobs_total", &[]),
        sample(&meta("jobs", MetricType::Counter), "jobs_created", &[]),
    ];
    assert_eq!(gate.admit(&mut batch), 3);
}

#[test]
fn unknown_families_cannot_be_retired_or_enabled() {
    let families = MetricFamilies::default();
    assert_eq!(families.retire("nope"), Err(UnknownFamily("nope".into())));
    assert_eq!(
        families.enable("nope").unwrap_err().to_string(),
        "unknown metric family \"nope\""
    );
    assert!(families.retired().is_none());
    assert_eq!(families.get("nope"), None);
}

#[test]
fn a_retired_family_stays_listed_when_nothing_of_it_flows() {
    let families = MetricFamilies::default();
    families.restore([RetiredFamily {
        name: "old".into(),
        kind: MetricType::Gauge,
        help: Some("Gone.".into()),
        unit: Some("seconds".into()),
        components: vec!["scrape".into()],
    }]);
    assert_eq!(
        families.list(),
        [FamilyInfo {
            name: "old".into(),
            kind: MetricType::Gauge,
            help: Some("Gone.".into()),
            unit: Some("seconds".into()),
            series: 0,
            components: vec!["scrape".into()],
            state: FamilyState::Retired,
        }]
    );
    // Retiring again changes nothing.
    assert_eq!(
        families.retire("old").unwrap().help.as_deref(),
        Some("Gone.")
    );
    assert_eq!(families.retired_families().len(), 1);
}

#[test]
fn series_counts_start_over_each_window_and_silent_families_leave() {
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let m = meta("g", MetricType::Gauge);
    seen.note(
        &[
            sample(&m, "g", &[("a", "1")]),
            sample(&m, "g", &[("a", "2")]),
        ],
        t0,
    );
    assert_eq!(seen.get("g").unwrap().series(), 2);
    // Next window: one series left; the last window's count still holds.
    seen.note(&[sample(&m, "g", &[("a", "1")])], t0 + WINDOW);
    assert_eq!(seen.get("g").unwrap().series(), 2);
    seen.note(&[sample(&m, "g", &[("a", "1")])], t0 + WINDOW * 2);
    assert_eq!(seen.get("g").unwrap().series(), 1);
    // Two windows without it: gone.
    seen.rotate(t0 + WINDOW * 3);
    assert!(seen.get("g").is_some());
    seen.rotate(t0 + WINDOW * 4);
    assert!(seen.families.is_empty());
}

#[test]
fn a_settled_count_stops_hashing_until_the_next_window() {
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let m = meta("g", MetricType::Gauge);
    let one = [sample(&m, "g", &[("a", "1")])];
    seen.note(&one, t0);
    for _ in 0..QUIET_RUNS {
        seen.note(&one, t0);
    }
    assert!(seen.get("g").unwrap().settled());
    // A series that shows up once the count is settled waits for the next
    // window.
    let two = [
        sample(&m, "g", &[("a", "1")]),
        sample(&m, "g", &[("a", "2")]),
    ];
    seen.note(&two, t0);
    assert_eq!(seen.get("g").unwrap().series(), 1);
    seen.note(&two, t0 + WINDOW);
    assert_eq!(seen.get("g").unwrap().series(), 2);
}

#[test]
fn a_gate_reads_the_retired_set_again_only_when_it_changed() {
    let families = MetricFamilies::default();
    let mut gate = families.gate("src");
    assert!(gate.current_retired().is_none());
    families.restore([RetiredFamily {
        name: "a".into(),
        kind: MetricType::Gauge,
        help: None,
        unit: None,
        components: vec![],
    }]);
    let first = gate.current_retired().unwrap();
    let second = gate.current_retired().unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    families.enable("a").unwrap();
    assert!(gate.current_retired().is_none());
}

mod model {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 4] = ["a", "b", "c_total", "d"];

    #[derive(Debug, Clone)]
    enum Op {
        Retire(usize),
        Enable(usize),
        Send(Vec<usize>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..NAMES.len()).prop_map(Op::Retire),
            (0..NAMES.len()).prop_map(Op::Enable),
            proptest::collection::vec(0..NAMES.len(), 0..6).prop_map(Op::Send),
        ]
    }

    proptest! {
        /// Whatever the order of retiring, enabling and sending, the gate
        /// lets through exactly the gauges of families not retired, and
        /// counts the rest.
        #[test]
        fn the_gate_passes_exactly_what_is_not_retired(ops in proptest::collection::vec(op(), 1..40)) {
            let families = MetricFamilies::default();
            let mut gate = families.gate("src");
            // Every family seen once, so each can be retired.
            let all: Vec<usize> = (0..NAMES.len()).collect();
            let gauge = |i: usize| Metric::new(NAMES[i], MetricType::Gauge, Labels::empty(), 1.0, 0);
            gate.admit(&mut all.iter().map(|&i| gauge(i)).collect());
            let mut retired: HashSet<usize> = HashSet::new();
            for op in ops {
                match op {
                    Op::Retire(i) => {
                        prop_assert_eq!(families.retire(NAMES[i]).unwrap().state, FamilyState::Retired);
                        retired.insert(i);
                    }
                    Op::Enable(i) => {
                        prop_assert_eq!(families.enable(NAMES[i]).unwrap().state, FamilyState::Active);
                        retired.remove(&i);
                    }
                    Op::Send(idx) => {
                        let mut batch: Vec<Metric> = idx.iter().map(|&i| gauge(i)).collect();
                        let removed = gate.admit(&mut batch);
                        let want: Vec<&str> = idx.iter().filter(|i| !retired.contains(i)).map(|&i| NAMES[i]).collect();
                        prop_assert_eq!(names(&batch), want);
                        prop_assert_eq!(removed, idx.len() - batch.len());
                    }
                }
                prop_assert_eq!(families.retired().is_some(), !retired.is_empty());
                let listed: Vec<(String, FamilyState)> = families.list().into_iter().map(|f| (f.name, f.state)).collect();
                let expected: Vec<(String, FamilyState)> = all.iter().map(|&i| {
                    let state = if retired.contains(&i) { FamilyState::Retired } else { FamilyState::Active };
                    (NAMES[i].to_string(), state)
                }).collect();
                prop_assert_eq!(listed, expected);
            }
        }
    }
}
