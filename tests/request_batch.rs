//! A tick's requests and a tick's replies cross from JavaScript as one batch each
//! ([`Handle::ask_all`], [`Handle::reply_all`]: one step of the node and one write for all
//! of them). Against a real driver node on 127.0.0.1 and a peer of our own: each request
//! gets its own outcome and the ones taken leave in order; each reply reaches its asker in
//! order, and a batch answers nothing the core would not answer one at a time.

mod support;

use std::time::Duration;

use espial::core::cluster::requests::Reply;
use espial::core::cluster::Event;
use espial::core::error::SendError;
use espial::core::message::{status, Message};
use espial::core::node::NodeId;
use espial::driver::{Ask, Notification};
use support::{Peer, Target};

/// What the node sends `peer` next of its requests and replies: `(is a request, id, status
/// or binary flag, payload)`.
fn next_call(peer: &mut Peer) -> (bool, u64, u8, Vec<u8>) {
    loop {
        let plain = peer.next_message().expect("a request or a reply");
        match Message::decode(&plain, 1 << 20) {
            Ok(Message::Request {
                id,
                binary,
                payload,
                ..
            }) => return (true, id, u8::from(binary), payload.to_vec()),
            Ok(Message::Reply {
                id,
                status,
                payload,
                ..
            }) => return (false, id, status, payload.to_vec()),
            _ => {}
        }
    }
}

fn ask<'a>(
    name: &'a str,
    binary: bool,
    payload: &'a [u8],
    target: Result<NodeId, SendError>,
) -> Ask<'a> {
    Ask {
        name,
        binary,
        payload,
        target,
        timeout: Duration::from_secs(30),
    }
}

#[test]
fn a_batch_of_requests_gets_one_outcome_each_and_leaves_in_order() {
    let mut target = Target::start(&["evt"]);
    let mut asked = Peer::join(&mut target);
    let results = target.handle.ask_all(&[
        ask("work", false, b"[1]", Ok(asked.id)),
        ask(
            "work",
            false,
            b"[2]",
            Err(SendError::UnknownTarget("nobody".into())),
        ),
        ask("work", false, b"[3]", Ok(NodeId([7; 16]))),
        ask("", false, b"[4]", Ok(asked.id)),
        ask("work", true, &[5], Ok(asked.id)),
    ]);
    assert!(matches!(&results[1], Err(SendError::UnknownTarget(t)) if t == "nobody"));
    assert!(
        matches!(&results[2], Err(SendError::UnknownTarget(_))),
        "not a member"
    );
    assert_eq!(results[3], Err(SendError::InvalidName));
    let first = results[0].clone().expect("the first is asked");
    let last = results[4].clone().expect("the last is asked");
    assert_eq!(last, first + 1, "a refused request takes no id");
    assert_eq!(next_call(&mut asked), (true, first, 0, b"[1]".to_vec()));
    assert_eq!(next_call(&mut asked), (true, last, 1, vec![5]));
    assert_eq!(target.stats().requests_out, 2);
    target.assert_no_errors();
}

#[test]
fn a_batch_of_replies_reaches_the_asker_in_order_and_answers_each_request_once() {
    let mut target = Target::start(&["evt"]);
    target.handle.serve("work".into()).unwrap();
    let mut asker = Peer::join(&mut target);
    for id in [11, 12, 13] {
        asker.send_request(id, "work", b"null");
    }
    for id in [11, 12, 13] {
        target.wait_for(
            "the peer's request",
            |n| matches!(n, Notification::Cluster(Event::Request { id: got, .. }) if *got == id),
        );
    }
    target.handle.reply_all([
        (
            asker.id,
            11,
            Reply::Value {
                binary: false,
                payload: b"1",
            },
        ),
        // Not the node that asked it: nothing is sent.
        (
            NodeId([9; 16]),
            12,
            Reply::Value {
                binary: false,
                payload: b"9",
            },
        ),
        (asker.id, 13, Reply::NoHandler),
        (
            asker.id,
            12,
            Reply::Value {
                binary: true,
                payload: &[2],
            },
        ),
        // Answered already: nothing is sent.
        (
            asker.id,
            11,
            Reply::Value {
                binary: false,
                payload: b"2",
            },
        ),
    ]);
    assert_eq!(
        next_call(&mut asker),
        (false, 11, status::VALUE_JSON, b"1".to_vec())
    );
    assert_eq!(
        next_call(&mut asker),
        (false, 13, status::NO_HANDLER, Vec::new())
    );
    assert_eq!(
        next_call(&mut asker),
        (false, 12, status::VALUE_BINARY, vec![2])
    );
    // A request of the node's after the batch comes next: no second reply to 11 before it.
    let asked = target
        .handle
        .ask_all(&[ask("x", false, b"0", Ok(asker.id))])
        .remove(0)
        .expect("asked");
    assert_eq!(next_call(&mut asker), (true, asked, 0, b"0".to_vec()));
    target.assert_no_errors();
}
