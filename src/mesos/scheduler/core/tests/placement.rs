//! Where builds go: the agent holding their base layers, within the locality wait.

use super::*;

/// A build on base layers l1..l3, and agent "agent-hold" reporting (with a finished
/// build's terminal update) that its daemon holds them.
fn core_knowing_the_holder() -> Core {
    let mut c = Core::new(
        CoreConfig {
            settle: Duration::ZERO,
            locality_wait: Duration::from_secs(3),
            ..Default::default()
        },
        Some("fw-1".into()),
    );
    c.on_subscribed("fw-1".into(), Instant::now());
    let (tx, _rx) = mpsc::unbounded_channel();
    let warm = build("ns/warm", 0.5);
    let id = warm.task_id.clone();
    c.launch(warm, tx);
    c.on_offers(vec![offer("o0", "hold", 1.0, 4096.0, "*")], Instant::now());
    let mut fin = status(&id, TaskState::TaskFinished, Some(b"w"));
    fin.agent_id = Some(AgentId {
        value: "agent-hold".into(),
    });
    let holds = crate::mesos::task::Holdings::capped(Vec::new(), layers());
    fin.data = Some(
        TaskReport::finished(BuildOutcome::default())
            .with_holds(holds)
            .encode(),
    );
    c.on_update(fin);
    c
}

fn layers() -> Vec<String> {
    ["l1", "l2", "l3"]
        .iter()
        .map(|l| format!("sha256:{l}"))
        .collect()
}

fn placed(rx: &mut mpsc::UnboundedReceiver<TaskUpdate>) -> Option<Placement> {
    drain(rx).into_iter().find_map(|u| match u {
        TaskUpdate::Placed(p) => Some(p),
        _ => None,
    })
}

#[test]
fn a_build_goes_to_the_agent_holding_its_base_layers_whatever_the_offer_order() {
    let mut c = core_knowing_the_holder();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut leaf = build("ns/leaf", 0.5);
    leaf.base_layers = layers();
    c.launch(leaf, tx);
    let offers = vec![
        offer("o1", "other", 1.0, 4096.0, "*"),
        offer("o2", "hold", 1.0, 4096.0, "*"),
    ];
    let calls = c.on_offers(offers, Instant::now());
    let p = placed(&mut rx).expect("placed");
    assert_eq!(p.host, "hold");
    assert_eq!(
        p.why.as_deref(),
        Some("placed on hold: holds 3/3 base layers")
    );
    let accept = calls.iter().find_map(|c| c.accept.as_ref()).unwrap();
    assert_eq!(accept.offer_ids[0].value, "o2");
}

#[test]
fn with_the_holder_full_a_build_takes_another_agent_once_the_locality_wait_is_over() {
    let mut c = core_knowing_the_holder();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut leaf = build("ns/leaf", 0.5);
    leaf.base_layers = layers();
    c.launch(leaf, tx);
    let t0 = Instant::now();
    // the holder offers too little; the other agent's offer is passed up, briefly
    let calls = c.on_offers(
        vec![
            offer("o1", "other", 1.0, 4096.0, "*"),
            offer("o2", "hold", 0.2, 4096.0, "*"),
        ],
        t0,
    );
    assert!(
        placed(&mut rx).is_none(),
        "launched before the locality wait"
    );
    let filters: Vec<(Vec<String>, f64)> = calls
        .iter()
        .filter_map(|c| c.decline.as_ref())
        .map(|d| {
            let ids = d.offer_ids.iter().map(|o| o.value.clone()).collect();
            (ids, d.filters.as_ref().unwrap().refuse_seconds.unwrap())
        })
        .collect();
    // both come back when the wait is over: the holder may have room by then
    assert_eq!(
        filters,
        [(vec!["o1".to_string(), "o2".to_string()], 3.0)],
        "the passed-up offer is not kept away for long"
    );
    let calls = c.on_offers(
        vec![offer("o3", "other", 1.0, 4096.0, "*")],
        t0 + Duration::from_secs(1),
    );
    assert!(placed(&mut rx).is_none());
    let refuse = calls[0].decline.as_ref().unwrap().filters.as_ref().unwrap();
    assert_eq!(refuse.refuse_seconds, Some(2.0), "what is left of the wait");
    c.on_offers(
        vec![offer("o4", "other", 1.0, 4096.0, "*")],
        t0 + Duration::from_secs(3),
    );
    let p = placed(&mut rx).expect("placed after the wait");
    assert_eq!(p.host, "other");
    let why = p.why.unwrap();
    assert!(
        why.starts_with("placed on other: holds 0/3 base layers"),
        "{why}"
    );
}

#[test]
fn a_waiting_build_is_told_which_agent_it_waits_for() {
    let mut c = core_knowing_the_holder();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut leaf = build("ns/leaf", 0.5);
    leaf.base_layers = layers();
    c.launch(leaf, tx);
    c.on_offers(vec![offer("o1", "other", 1.0, 4096.0, "*")], Instant::now());
    let last = drain(&mut rx).into_iter().rev().find_map(|u| match u {
        TaskUpdate::Waiting(m) => Some(m),
        _ => None,
    });
    assert_eq!(
        last.as_deref(),
        Some("waiting up to 3s for an offer of hold: holds 3/3 base layers (locality)")
    );
}
