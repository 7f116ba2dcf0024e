//! Unit tests of a ticket's request checks and arithmetic (`tickets.rs`):
//! every refusal of `queue_match`'s fields at and one past its limit, the
//! defaults, the skill window over time, acceptable regions and pool keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use crate::lobby::tickets::{
    pool_key, Ticket, TicketSpec, MAX_REGIONS, MAX_REGION_CHARS, MAX_TICKET_NUMBER,
};
use crate::protocol::{ErrorCode, QueueMatch};

const LIMIT: u64 = 16;

fn req() -> QueueMatch {
    QueueMatch {
        mode: Some("duel".into()),
        max_players: Some(4),
        ..QueueMatch::default()
    }
}

fn spec(r: QueueMatch) -> TicketSpec {
    TicketSpec::from_request(&r, LIMIT).expect("accepted")
}

/// The refusal's message (the code is always `bad_request`).
fn refused(r: QueueMatch) -> String {
    let e = TicketSpec::from_request(&r, LIMIT).expect_err("refused");
    assert_eq!(e.code, ErrorCode::BadRequest, "{}", e.message);
    e.message
}

fn regions(list: &[(&str, f64)]) -> Option<BTreeMap<String, f64>> {
    Some(list.iter().map(|(r, t)| (r.to_string(), *t)).collect())
}

#[test]
fn defaults_are_the_contracts() {
    let s = spec(QueueMatch::default());
    assert_eq!(s.mode, "default");
    assert_eq!(s.max_players, 2);
    assert_eq!(s.min_players, 2, "min_players defaults to max_players");
    assert_eq!(s.skill, None);
    assert_eq!(s.skill_window, 100.0);
    assert_eq!(s.skill_widen_per_s, 50.0);
    assert_eq!(s.skill_window_max, 1000.0);
    assert!(s.regions.is_empty());
    assert_eq!(s.max_rtt_ms, 150.0);
    assert!(s.filters.is_empty());
    assert!(!s.backfill);

    let given = spec(QueueMatch {
        min_players: Some(3),
        skill: Some(-12.5),
        skill_window: Some(0.0),
        skill_widen_per_s: Some(7.0),
        skill_window_max: Some(70.0),
        regions: regions(&[("eu", 20.0)]),
        max_rtt_ms: Some(30.0),
        filters: json!({"map": "dust"}).as_object().cloned(),
        backfill: true,
        ..req()
    });
    assert_eq!(given.mode, "duel");
    assert_eq!((given.max_players, given.min_players), (4, 3));
    assert_eq!(given.skill, Some(-12.5));
    assert_eq!(
        (
            given.skill_window,
            given.skill_widen_per_s,
            given.skill_window_max
        ),
        (0.0, 7.0, 70.0)
    );
    assert_eq!(given.regions, regions(&[("eu", 20.0)]).unwrap());
    assert_eq!(given.max_rtt_ms, 30.0);
    assert_eq!(given.filters["map"], "dust");
    assert!(given.backfill);
}

#[test]
fn sizes_are_checked() {
    assert_eq!(
        spec(QueueMatch {
            min_players: Some(1),
            ..req()
        })
        .min_players,
        1
    );
    assert_eq!(
        spec(QueueMatch {
            min_players: Some(4),
            ..req()
        })
        .min_players,
        4
    );
    let m = refused(QueueMatch {
        min_players: Some(0),
        ..req()
    });
    assert!(
        m.contains("min_players must be 1 to max_players (4), got 0"),
        "{m}"
    );
    let m = refused(QueueMatch {
        min_players: Some(5),
        ..req()
    });
    assert!(m.contains("got 5"), "{m}");
    assert_eq!(
        spec(QueueMatch {
            max_players: Some(LIMIT),
            ..req()
        })
        .max_players,
        LIMIT
    );
    refused(QueueMatch {
        max_players: Some(LIMIT + 1),
        ..req()
    });
    refused(QueueMatch {
        mode: Some(String::new()),
        ..req()
    });
    refused(QueueMatch {
        filters: json!({"deep": {"x": 1}}).as_object().cloned(),
        ..req()
    });
}

#[test]
fn numbers_are_finite_and_within_a_billion() {
    for ok in [MAX_TICKET_NUMBER, -MAX_TICKET_NUMBER, 0.0, 1.5] {
        assert_eq!(
            spec(QueueMatch {
                skill: Some(ok),
                ..req()
            })
            .skill,
            Some(ok)
        );
    }
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        MAX_TICKET_NUMBER * 1.000001,
        -MAX_TICKET_NUMBER * 1.000001,
    ] {
        let m = refused(QueueMatch {
            skill: Some(bad),
            ..req()
        });
        assert!(m.starts_with("skill must be a number between"), "{m}");
    }
    // Windows and limits: also not negative (zero is fine).
    type Set = fn(&mut QueueMatch, f64);
    let fields: [(&str, Set); 4] = [
        ("skill_window", |r, v| r.skill_window = Some(v)),
        ("skill_widen_per_s", |r, v| r.skill_widen_per_s = Some(v)),
        ("skill_window_max", |r, v| r.skill_window_max = Some(v)),
        ("max_rtt_ms", |r, v| r.max_rtt_ms = Some(v)),
    ];
    for (name, set) in fields {
        for ok in [0.0, 1.0, MAX_TICKET_NUMBER] {
            let mut r = req();
            set(&mut r, ok);
            spec(r);
        }
        let mut r = req();
        set(&mut r, -0.001);
        let m = refused(r);
        assert_eq!(m, format!("{name} must not be negative"));
        for bad in [f64::NAN, MAX_TICKET_NUMBER * 2.0] {
            let mut r = req();
            set(&mut r, bad);
            assert!(refused(r).starts_with(name));
        }
    }
}

#[test]
fn regions_are_named_bounded_and_reachable() {
    let long = "r".repeat(MAX_REGION_CHARS);
    let s = spec(QueueMatch {
        regions: regions(&[("eu-west_1.b", 10.0), (&long, 0.0)]),
        ..req()
    });
    assert_eq!(s.regions.len(), 2);
    let too_long = "r".repeat(MAX_REGION_CHARS + 1);
    for bad in ["", "eu west", "eu/west", "é", "eu\n", too_long.as_str()] {
        let m = refused(QueueMatch {
            regions: regions(&[(bad, 10.0)]),
            ..req()
        });
        assert!(
            m.starts_with("region names must be 1 to 64"),
            "{bad:?}: {m}"
        );
    }
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let m = refused(QueueMatch {
            regions: regions(&[("eu", bad)]),
            ..req()
        });
        assert!(m.starts_with("a region's rtt"), "{m}");
    }
    let many = |n: usize| {
        Some(
            (0..n)
                .map(|i| (format!("r{i}"), 10.0))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    assert_eq!(
        spec(QueueMatch {
            regions: many(MAX_REGIONS),
            ..req()
        })
        .regions
        .len(),
        32
    );
    let m = refused(QueueMatch {
        regions: many(MAX_REGIONS + 1),
        ..req()
    });
    assert_eq!(m, "at most 32 regions");

    // Every region over the limit: it could never form a room.
    let m = refused(QueueMatch {
        regions: regions(&[("eu", 150.001), ("us", 400.0)]),
        ..req()
    });
    assert_eq!(m, "no region within max_rtt_ms (150 ms)");
    // At the limit is within it; one region within is enough.
    spec(QueueMatch {
        regions: regions(&[("eu", 150.0)]),
        ..req()
    });
    spec(QueueMatch {
        regions: regions(&[("eu", 300.0), ("us", 20.0)]),
        ..req()
    });
    refused(QueueMatch {
        regions: regions(&[("eu", 31.0)]),
        max_rtt_ms: Some(30.0),
        ..req()
    });
}

fn ticket(s: TicketSpec, queued: Instant) -> Ticket {
    Ticket {
        id: "t1".into(),
        players: vec!["a".into(), "b".into()],
        spec: s,
        seq: 1,
        queued,
        queued_at: Utc::now(),
        away: BTreeSet::new(),
        timer: None,
    }
}

#[test]
fn the_window_widens_with_waiting_up_to_its_maximum() {
    let t0 = Instant::now();
    let skilled = || {
        spec(QueueMatch {
            skill: Some(1000.0),
            ..req()
        })
    };
    let t = ticket(skilled(), t0);
    assert_eq!(t.window(t0), 100.0);
    assert_eq!(t.window(t0 + Duration::from_secs(2)), 200.0);
    assert_eq!(t.window(t0 + Duration::from_millis(500)), 125.0);
    assert_eq!(t.window(t0 + Duration::from_secs(18)), 1000.0);
    assert_eq!(t.window(t0 + Duration::from_secs(60)), 1000.0, "capped");
    // (1000 - 100) / 50 = 18 s.
    assert_eq!(t.widens_until(), Some(t0 + Duration::from_secs(18)));
    assert_eq!(t.size(), 2);
    let info = t.info();
    assert_eq!(info.ticket_id, "t1");
    assert_eq!(info.players, ["a", "b"]);
    assert_eq!(info.queued_at, t.queued_at);

    // No skill, no widening, or nothing to widen to: no end to wait for.
    assert_eq!(ticket(spec(req()), t0).widens_until(), None);
    let mut s = skilled();
    s.skill_widen_per_s = 0.0;
    assert_eq!(ticket(s.clone(), t0).widens_until(), None);
    assert_eq!(ticket(s, t0).window(t0 + Duration::from_secs(99)), 100.0);
    let mut s = skilled();
    s.skill_window_max = 100.0;
    assert_eq!(ticket(s, t0).widens_until(), None);
    let mut s = skilled();
    s.skill_window_max = 99.0;
    assert_eq!(ticket(s.clone(), t0).widens_until(), None);
    assert_eq!(
        ticket(s, t0).window(t0),
        99.0,
        "the maximum bounds the start"
    );
    // A slow widening is capped at a day.
    let mut s = skilled();
    s.skill_window_max = MAX_TICKET_NUMBER;
    s.skill_widen_per_s = 0.001;
    assert_eq!(
        ticket(s, t0).widens_until(),
        Some(t0 + Duration::from_secs(86_400))
    );
}

#[test]
fn acceptable_regions_are_those_within_the_limit() {
    let t0 = Instant::now();
    assert_eq!(ticket(spec(req()), t0).acceptable_regions(), None);
    let s = spec(QueueMatch {
        regions: regions(&[("eu", 149.0), ("us", 150.0), ("ap", 151.0)]),
        ..req()
    });
    let t = ticket(s, t0);
    let ok = t.acceptable_regions().unwrap();
    assert_eq!(
        ok.into_iter().collect::<Vec<_>>(),
        [("eu", 149.0), ("us", 150.0)]
    );
}

#[test]
fn pools_part_by_mode_size_filters_and_skill() {
    let base = spec(req());
    let key = pool_key(&base);
    assert_eq!(key, pool_key(&spec(req())));
    assert_eq!(key, "duel\u{1f}4\u{1f}{}\u{1f}n");
    let skilled = spec(QueueMatch {
        skill: Some(5.0),
        ..req()
    });
    assert_eq!(pool_key(&skilled), "duel\u{1f}4\u{1f}{}\u{1f}s");
    // The skill value, windows, regions and min_players do not part pools.
    let other = spec(QueueMatch {
        skill: Some(900.0),
        skill_window: Some(3.0),
        min_players: Some(2),
        regions: regions(&[("eu", 1.0)]),
        ..req()
    });
    assert_eq!(pool_key(&other), pool_key(&skilled));
    for differs in [
        QueueMatch {
            mode: Some("ffa".into()),
            ..req()
        },
        QueueMatch {
            max_players: Some(5),
            ..req()
        },
        QueueMatch {
            filters: json!({"map": "dust"}).as_object().cloned(),
            ..req()
        },
    ] {
        assert_ne!(pool_key(&spec(differs)), key);
    }
    // Equal filters in any order are one pool.
    let a = json!({"a": 1, "b": 2}).as_object().cloned();
    let mut b = serde_json::Map::new();
    b.insert("b".into(), json!(2));
    b.insert("a".into(), json!(1));
    assert_eq!(
        pool_key(&spec(QueueMatch {
            filters: a,
            ..req()
        })),
        pool_key(&spec(QueueMatch {
            filters: Some(b),
            ..req()
        }))
    );
}
