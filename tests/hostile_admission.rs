//! Admission first, against a real driver node on 127.0.0.1: nothing of the membership
//! reaches a connection before both ends have admitted each other, every connection is
//! judged by the filter (a live member's second one included) and inherits nothing, and a
//! message out of turn before admission is refused without changing anything. (The target
//! and the peer are in `support/`.)

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use espial::core::cluster::Event;
use espial::core::message::Message;
use espial::core::node::{Candidate, NodeId};
use espial::driver::{Filter, Notification};
use support::{assert_closed, still_serving, Peer, Target};

/// A connection filter that remembers every candidate it was asked about, and refuses the
/// host names in its list, after `delay`.
#[derive(Default)]
struct Judge {
    asked: Mutex<Vec<Candidate>>,
    refuse: Mutex<Vec<String>>,
    delay: Duration,
}

impl Judge {
    fn refusing(names: &[&str]) -> Arc<Judge> {
        let judge = Judge::default();
        *judge.refuse.lock().unwrap() = names.iter().map(|n| n.to_string()).collect();
        Arc::new(judge)
    }

    /// The ids asked about, in order.
    fn asked_ids(&self) -> Vec<NodeId> {
        self.asked.lock().unwrap().iter().map(|c| c.id).collect()
    }
}

impl Filter for Judge {
    fn judge(&self, node: Candidate) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send>> {
        let accept = !self.refuse.lock().unwrap().contains(&node.host_name);
        self.asked.lock().unwrap().push(node);
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(accept)
        })
    }
}

/// Membership events the node emitted about `id`: added, removed, updated.
fn membership_events(target: &Target, id: NodeId) -> Vec<Event> {
    let about = |e: &Event| match e {
        Event::NodeAdded(n) | Event::NodeRemoved(n) | Event::NodeUpdated(n) => n.id == id,
        _ => false,
    };
    let events = target.seen.iter().filter_map(|n| match n {
        Notification::Cluster(e) if about(e) => Some(e.clone()),
        _ => None,
    });
    events.collect()
}

/// No master change named any of `ids` (`get_master()` never became one of them).
fn assert_no_master_among(target: &Target, ids: &[NodeId]) {
    for n in &target.seen {
        if let Notification::Cluster(Event::NewMaster(Some(m))) = n {
            assert!(!ids.contains(&m.id), "{m:?} made master");
        }
    }
}

/// The members as the application sees them (`get_nodes()`): added and not removed since.
fn members(target: &Target) -> Vec<NodeId> {
    let mut ids = Vec::new();
    for n in &target.seen {
        match n {
            Notification::Cluster(Event::NodeAdded(i)) => ids.push(i.id),
            Notification::Cluster(Event::NodeRemoved(i)) => ids.retain(|&id| id != i.id),
            _ => {}
        }
    }
    ids
}

/// The messages `peer` heard, decoded.
fn heard(peer: &Peer) -> Vec<Message<'_>> {
    let decoded = peer
        .heard
        .iter()
        .map(|p| Message::decode(p, 1 << 20).unwrap());
    decoded.collect()
}

/// A member with a host name and metadata of its own, so that a leak would show.
fn member(target: &mut Target) -> Peer {
    let mut peer = Peer::handshake(target);
    peer.host_name = "secret-member-host".into();
    peer.introduce(r#"{"secret":"member"}"#);
    assert_eq!(peer.their_verdict(), Some(true));
    let id = peer.id;
    target.wait_for(
        "the member added",
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(i)) if i.id == id),
    );
    peer.send(&Message::Subscribe("secret-event".into()));
    peer
}

#[test]
fn a_refused_node_learns_nothing_of_the_membership() {
    let mut target = Target::start(&["evt", "secret-event"]);
    target.handle.set_metadata(r#"{"secret":"target"}"#.into());
    let judge = Judge::refusing(&["intruder"]);
    target.handle.set_filter(Some(judge.clone()));
    let mut member = member(&mut target);
    let before = members(&target);

    // Refused by the node: it hears the node's introduction and a refusal, then the close.
    let mut intruder = Peer::handshake(&target);
    intruder.host_name = "intruder".into();
    intruder.introduce(r#"{"role":"admin"}"#);
    assert_eq!(intruder.their_verdict(), Some(false));
    intruder.read_until_closed().unwrap();
    // Admitted by the node's filter, but it never admits the node: still nothing more.
    let mut hesitant = Peer::handshake(&target);
    hesitant.introduce_only();
    assert_eq!(hesitant.their_verdict(), Some(true));
    std::thread::sleep(Duration::from_millis(300));
    hesitant.stream.shutdown(std::net::Shutdown::Write).unwrap();
    hesitant.read_until_closed().unwrap();

    for (who, peer) in [
        ("the intruder", &intruder),
        ("the hesitant peer", &hesitant),
    ] {
        let kinds: Vec<_> = heard(peer).into_iter().map(|m| format!("{m:?}")).collect();
        assert_eq!(kinds.len(), 2, "{who} heard {kinds:?}");
        assert!(
            matches!(heard(peer)[0], Message::Introduce { ref host_name, .. } if host_name == "target"),
            "{who}: {kinds:?}"
        );
        assert!(matches!(heard(peer)[1], Message::Verdict { .. }), "{who}");
        for plain in &peer.heard {
            let text = String::from_utf8_lossy(plain);
            assert!(!text.contains("secret"), "{who} read {text:?}");
        }
    }
    // The victim's view: asked about every newcomer, nobody added, the member kept.
    let asked = judge.asked_ids();
    assert_eq!(asked, vec![member.id, intruder.id, hesitant.id]);
    for id in [intruder.id, hesitant.id] {
        assert_eq!(membership_events(&target, id), vec![], "nothing about {id}");
    }
    assert_no_master_among(&target, &[intruder.id, hesitant.id]);
    assert_eq!(members(&target), before);
    member.event(b"member still heard");
    target.wait_for("the member's event", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"member still heard")
    });
    still_serving(&mut target, "a newcomer after the refusals");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn metadata_sent_before_admission_is_refused_and_a_member_has_its_profile_metadata() {
    let mut target = Target::start(&["evt"]);
    let judge = Arc::new(Judge {
        delay: Duration::from_millis(200),
        ..Judge::default()
    });
    target.handle.set_filter(Some(judge.clone()));
    // 1. An update between the filter's answer and admission (our profile not sent).
    let mut early = Peer::handshake(&target);
    early.introduce_only();
    early.send(&Message::Verdict { accepted: true });
    assert_eq!(early.their_verdict(), Some(true));
    early.send(&Message::Update {
        metadata: r#"{"role":"admin"}"#.into(),
    });
    assert_closed(&mut early.stream, "an update before admission");
    assert_eq!(target.stats().messages_refused, 1);
    // 2. A profile before the node's verdict, while its filter is still thinking.
    let mut hasty = Peer::handshake(&target);
    hasty.introduce_only();
    hasty.send(&Message::Verdict { accepted: true });
    hasty.send_profile(r#"{"role":"admin"}"#);
    assert_closed(&mut hasty.stream, "a profile before the node's verdict");
    assert_eq!(target.stats().messages_refused, 2);
    // 3. Any other membership message before admission.
    let mut eager = Peer::handshake(&target);
    eager.introduce_only();
    eager.send(&Message::Subscribe("evt".into()));
    assert_closed(&mut eager.stream, "a subscription before admission");
    assert_eq!(target.stats().messages_refused, 3);
    target.settle(Duration::from_millis(300));
    for id in [early.id, hasty.id, eager.id] {
        assert_eq!(membership_events(&target, id), vec![], "nothing about {id}");
    }
    assert_no_master_among(&target, &[early.id, hasty.id, eager.id]);
    assert_eq!(members(&target), Vec::<NodeId>::new());

    // The honest order: the member has the metadata of its profile, sent after admission.
    let mut honest = Peer::handshake(&target);
    honest.introduce(r#"{"role":"worker"}"#);
    assert_eq!(honest.their_verdict(), Some(true));
    let id = honest.id;
    target.wait_for("the honest peer added", |n| {
        matches!(n, Notification::Cluster(Event::NodeAdded(i))
            if i.id == id && i.metadata == r#"{"role":"worker"}"#)
    });
    assert_eq!(judge.asked_ids(), vec![early.id, hasty.id, eager.id, id]);
    assert_eq!(target.stats().messages_refused, 3);
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_second_connection_of_a_live_member_is_judged_again_and_inherits_nothing() {
    let mut target = Target::start(&["evt"]);
    let judge = Judge::refusing(&["refused-twin"]);
    target.handle.set_filter(Some(judge.clone()));
    let mut genuine = Peer::join(&mut target);
    let id = genuine.id;
    let before = members(&target);
    // A second connection of the member's own: it holds the member's key (with identity
    // keys nobody else can be connected as `id`; see hostile_identity.rs).
    let key_pair = genuine.identity.clone();
    let twin = |target: &Target, host_name: &str| {
        let mut twin = Peer::connect_as(
            target.addr,
            &target.cluster,
            target.key.as_ref(),
            key_pair.clone(),
        );
        assert_eq!(twin.id, id);
        twin.host_name = host_name.into();
        twin
    };

    // Refused by the filter: the member carries on, untouched.
    let mut refused = twin(&target, "refused-twin");
    refused.introduce(r#"{"v":"forged"}"#);
    assert_eq!(refused.their_verdict(), Some(false));
    refused.read_until_closed().unwrap();
    // Admitted by both ends but without a profile of its own: it speaks as nobody.
    let mut bare = twin(&target, "attacker");
    bare.introduce_only();
    bare.send(&Message::Verdict { accepted: true });
    assert_eq!(bare.their_verdict(), Some(true));
    bare.event(b"forged by a twin");
    bare.read_until_closed().unwrap();
    assert_eq!(target.stats().messages_refused, 1);
    // Nothing of the membership reached them: the refused one heard the introduction and
    // the verdict; the bare one (admitted by both ends) the node's own profile and joins
    // too, but no member list and no election state, as it never became a member.
    let refused_heard = heard(&refused);
    assert!(
        matches!(
            refused_heard[..],
            [
                Message::Introduce { .. },
                Message::Verdict { accepted: false }
            ]
        ),
        "{refused_heard:?}"
    );
    let bare_heard = heard(&bare);
    assert!(
        matches!(
            bare_heard[..],
            [
                Message::Introduce { .. },
                Message::Verdict { accepted: true },
                Message::Profile { .. },
                Message::Subscriptions(_)
            ]
        ),
        "{bare_heard:?}"
    );
    genuine.event(b"the genuine member");
    target.wait_for("the genuine member's event", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"the genuine member")
    });
    assert!(!target.messages().contains(&b"forged by a twin".to_vec()));
    assert_eq!(judge.asked_ids(), vec![id, id, id], "asked each time");
    assert_eq!(members(&target), before);
    assert_eq!(
        membership_events(&target, id).len(),
        1,
        "added once, nothing since"
    );

    // Admitted by both ends with a profile: it replaces the old connection, judged anew
    // (with the metadata of its own profile), and the node stays one member.
    let mut again = twin(&target, "attacker");
    again.introduce(r#"{"v":2}"#);
    assert_eq!(again.their_verdict(), Some(true));
    target.wait_for("the new metadata", |n| {
        matches!(n, Notification::Cluster(Event::NodeUpdated(i)) if i.id == id && i.metadata == r#"{"v":2}"#)
    });
    assert_closed(&mut genuine.stream, "the replaced connection");
    assert_eq!(judge.asked_ids(), vec![id, id, id, id]);
    again.event(b"on the new connection");
    target.wait_for("an event on the new connection", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { from, payload, .. })
            if *from == id && payload == b"on the new connection")
    });
    let events = membership_events(&target, id);
    assert!(
        matches!(events[..], [Event::NodeAdded(_), Event::NodeUpdated(_)]),
        "added once, then only its metadata updated: {events:?}"
    );
    assert_eq!(members(&target).len(), 1);
    assert_no_master_among(&target, &[id]);
    still_serving(&mut target, "a newcomer after the twins");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_member_closed_for_breaking_a_rule_is_judged_again_when_the_node_redials_it() {
    let mut target = Target::start(&["evt"]);
    let judge = Judge::refusing(&[]);
    target.handle.set_filter(Some(judge.clone()));
    // The member listens, so the node's redial reaches it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut member = Peer::handshake(&target);
    member.port = listener.local_addr().unwrap().port();
    member.introduce(r#"{"v":1}"#);
    assert_eq!(member.their_verdict(), Some(true));
    let id = member.id;
    target.wait_for(
        "the member added",
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(i)) if i.id == id),
    );
    let rule_broken = Message::Update {
        metadata: "not json".into(),
    };
    // 1. Closed for it; the node redials, and asks its filter about the redial.
    member.send(&rule_broken);
    assert_closed(&mut member.stream, "a member that broke a rule");
    let mut back = Peer::accept(
        &listener,
        &target.cluster,
        target.key.as_ref(),
        member.identity.clone(),
    )
    .expect("the redial's handshake");
    back.introduce(r#"{"v":1}"#);
    assert_eq!(back.their_verdict(), Some(true));
    back.event(b"back again");
    target.wait_for("an event on the redial", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { from, payload, .. })
            if *from == id && payload == b"back again")
    });
    assert_eq!(judge.asked_ids(), vec![id, id], "the redial was judged");
    assert_eq!(target.stats().messages_refused, 1);
    assert_eq!(
        membership_events(&target, id).len(),
        1,
        "added once, nothing since"
    );
    assert_eq!(members(&target), vec![id]);
    // 2. Again, and this time the filter refuses it: it is a member no more.
    judge.refuse.lock().unwrap().push("rule-breaker".into());
    back.send(&rule_broken);
    assert_closed(&mut back.stream, "a member that broke a rule again");
    let mut refused = Peer::accept(
        &listener,
        &target.cluster,
        target.key.as_ref(),
        back.identity.clone(),
    )
    .expect("the redial's handshake");
    refused.host_name = "rule-breaker".into();
    refused.introduce(r#"{"v":1}"#);
    assert_eq!(refused.their_verdict(), Some(false));
    target.wait_for(
        "the member removed",
        |n| matches!(n, Notification::Cluster(Event::NodeRemoved(i)) if i.id == id),
    );
    assert_eq!(judge.asked_ids(), vec![id, id, id]);
    assert_eq!(members(&target), Vec::<NodeId>::new());
    assert_no_master_among(&target, &[id]);
    still_serving(&mut target, "a newcomer after the rule breaker");
    target.assert_no_errors();
    target.exit();
}
