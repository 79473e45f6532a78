//! The lanes without Kafka: a list of records stands in for the buffer, a
//! log of sends for librdkafka, and the tests hand back delivery results.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use rdkafka::error::RDKafkaErrorCode;

use super::*;
use crate::producer::delivery::Report;
use crate::producer::routing::Route;

const TOPIC: &str = "kafka-events";
const OTHER_TOPIC: &str = "kafka-queues";

/// The port the tests drive the lanes through.
#[derive(Default)]
struct FakePort {
    /// What the buffer holds.
    buffer: BTreeMap<u64, Record>,
    /// Every send, in order: sequence and whether it went alone.
    sent: Vec<(u64, bool)>,
    /// Handed to Kafka and not yet settled.
    in_flight: BTreeMap<u64, Box<InFlight>>,
    /// Acknowledged and not yet removed from the buffer.
    acked: Vec<u64>,
    /// Every acknowledgement, in order.
    acknowledged: Vec<u64>,
    dead_letters: Vec<Record>,
    /// Errors `send` returns for these sequences (once each).
    refuse: BTreeMap<u64, KafkaError>,
    /// The lane of each record, Kafka topic and partition: what the lanes
    /// must keep in order.
    lane: BTreeMap<u64, (String, i32)>,
}

impl Port for FakePort {
    fn read_after(&mut self, after: u64, limit: usize) -> Option<Vec<Record>> {
        Some(
            self.buffer
                .range(after + 1..)
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }

    fn send(
        &mut self,
        record: &Record,
        topic: &str,
        partition: i32,
        key: &str,
        sent: Box<InFlight>,
    ) -> Result<(), KafkaError> {
        assert_eq!(key, record::key(record));
        if let Some(error) = self.refuse.remove(&record.seq) {
            return Err(error);
        }
        let seq = record.seq;
        let lane = (topic.to_owned(), partition);
        assert_eq!(self.lane[&seq], lane, "record {seq} on the wrong lane");
        assert!(
            !self.in_flight.contains_key(&seq),
            "record {seq} sent while in flight"
        );
        // Nothing overtakes: every older record of this lane still in the
        // buffer is in flight or acknowledged.
        let overtaken: Vec<u64> = self
            .buffer
            .range(..seq)
            .map(|(s, _)| *s)
            .filter(|s| self.lane[s] == lane)
            .filter(|s| !self.in_flight.contains_key(s) && !self.acked.contains(s))
            .collect();
        assert!(
            overtaken.is_empty(),
            "record {seq} overtook {overtaken:?} on {lane:?}"
        );
        // And nothing newer of this lane is in flight: a failed lane sends
        // again from its failure only once its in-flight records settled.
        let newer: Vec<u64> = self
            .in_flight
            .range(seq..)
            .map(|(s, _)| *s)
            .filter(|s| self.lane[s] == lane)
            .collect();
        assert!(
            newer.is_empty(),
            "record {seq} sent while newer {newer:?} of {lane:?} are in flight"
        );
        self.sent.push((seq, sent.alone));
        self.in_flight.insert(seq, sent);
        Ok(())
    }

    fn acknowledged(&mut self, seq: u64, _received_at_ms: u64, _made: bool) {
        self.acked.push(seq);
        self.acknowledged.push(seq);
    }

    fn remove_acknowledged(&mut self) -> bool {
        for seq in std::mem::take(&mut self.acked) {
            self.buffer.remove(&seq);
        }
        true
    }

    fn dead_letter(&mut self, record: &Record, _topic: &str, _reason: &str) -> bool {
        self.dead_letters.push(record.clone());
        self.buffer.remove(&record.seq);
        true
    }

    fn fatal_error(&self) -> Option<String> {
        None
    }
}

/// A lane set on two topics, fed by the tests.
struct Harness {
    lanes: Lanes,
    port: FakePort,
    now: Instant,
    partitions: i32,
    next_seq: u64,
    /// Already-sent count of `port.sent` the last [`Harness::advance`]
    /// saw.
    seen: usize,
}

/// The entity id of a record on `partition`: the first of a fixed list
/// of ids that the partitioner puts there.
fn entity_on(partition: i32, partitions: i32) -> String {
    (0u64..)
        .map(|n| format!("00000000-0000-4000-8000-{n:012}"))
        .find(|id| Partitioner::Murmur2Random.partition(id.as_bytes(), partitions) == partition)
        .expect("some id lands on every partition")
}

fn produce(code: RDKafkaErrorCode) -> KafkaError {
    KafkaError::MessageProduction(code)
}

impl Harness {
    /// `partitions` per topic, `per_partition` records in flight per lane.
    fn new(partitions: i32, per_partition: usize) -> Harness {
        // Queue events go to their own topic, everything else to TOPIC.
        let router = Router::new(
            &[Route {
                pattern: "v2.routing.queues.*".into(),
                topic: OTHER_TOPIC.into(),
            }],
            TOPIC,
        )
        .unwrap();
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        let limits = Limits {
            records: 1_000,
            bytes: 1 << 30,
            per_partition,
        };
        let mut lanes = Lanes::new(
            router,
            Partitioner::Murmur2Random,
            limits,
            backoff,
            Arc::new(Telemetry::default()),
        );
        lanes.metadata(BTreeMap::from([
            (TOPIC.to_owned(), Ok(partitions)),
            (OTHER_TOPIC.to_owned(), Ok(partitions)),
        ]));
        Harness {
            lanes,
            port: FakePort::default(),
            now: Instant::now(),
            partitions,
            next_seq: 1,
            seen: 0,
        }
    }

    /// Buffers a record of TOPIC on `partition`; returns its sequence.
    fn append(&mut self, partition: i32) -> u64 {
        let entity = entity_on(partition, self.partitions);
        self.append_named(&format!("v2.users.{entity}.presence"), TOPIC, partition)
    }

    /// Buffers a record of OTHER_TOPIC on `partition`.
    fn append_other(&mut self, partition: i32) -> u64 {
        let entity = entity_on(partition, self.partitions);
        self.append_named(
            &format!("v2.routing.queues.{entity}.members"),
            OTHER_TOPIC,
            partition,
        )
    }

    fn append_named(&mut self, topic_name: &str, kafka_topic: &str, partition: i32) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.port.buffer.insert(
            seq,
            Record {
                seq,
                received_at_ms: 1_000 + seq,
                topic_name: topic_name.to_owned(),
                correlation_id: None,
                payload: format!("{{\"n\":{seq}}}").into_bytes(),
                kind: Default::default(),
            },
        );
        self.port
            .lane
            .insert(seq, (kafka_topic.to_owned(), partition));
        seq
    }

    /// Lets the lanes send; returns what they sent, in order.
    fn advance(&mut self) -> Vec<u64> {
        self.lanes.advance(&mut self.port, self.now);
        let new = self.port.sent[self.seen..]
            .iter()
            .map(|(s, _)| *s)
            .collect();
        self.seen = self.port.sent.len();
        new
    }

    fn settle(&mut self, seq: u64, result: Result<(), KafkaError>) {
        let sent = self
            .port
            .in_flight
            .remove(&seq)
            .unwrap_or_else(|| panic!("record {seq} is not in flight"));
        // As the delivery callback does: a record refused for good comes
        // back with the report.
        let refused = match &result {
            Err(error) if crate::producer::failure::refused_alone(error, sent.alone) => {
                self.port.buffer.get(&seq).cloned()
            }
            _ => None,
        };
        let report = Report {
            sent,
            result,
            offset: 0,
            refused,
        };
        self.lanes.settle(report, &mut self.port, self.now);
    }

    fn ack(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            self.settle(seq, Ok(()));
        }
    }

    /// Where the lane of TOPIC's `partition` holds from.
    fn lane_hold(&self, partition: usize) -> Option<u64> {
        self.lanes.topics[self.topic(TOPIC)].lanes[partition]
            .hold
            .map(|h| h.from)
    }

    fn topic(&self, name: &str) -> usize {
        self.lanes
            .topics
            .iter()
            .position(|t| t.name == name)
            .unwrap()
    }

    fn later(&mut self, by: Duration) {
        self.now += by;
    }
}

#[test]
fn a_full_lane_holds_from_its_first_unsent_record_while_other_lanes_go_on() {
    let mut h = Harness::new(2, 2);
    let a: Vec<u64> = (0..4).map(|_| h.append(0)).collect();
    let b = h.append(1);
    assert_eq!(
        h.advance(),
        vec![a[0], a[1], b],
        "window of 2 on partition 0"
    );
    assert_eq!(
        h.lane_hold(0),
        Some(a[2]),
        "the hold remembers the first unsent"
    );
    assert_eq!(h.lane_hold(1), None);
    // Newer records of the held lane stay; the other lane's go.
    let a4 = h.append(0);
    let b2 = h.append(1);
    assert_eq!(h.advance(), vec![b2]);
    assert_eq!(h.lane_hold(0), Some(a[2]), "still from the first unsent");
    assert!(h.port.buffer.contains_key(&a4));
}

#[test]
fn a_held_lane_catches_up_in_order_before_anything_newer() {
    let mut h = Harness::new(1, 2);
    let s: Vec<u64> = (0..4).map(|_| h.append(0)).collect();
    assert_eq!(h.advance(), &s[..2]);
    let newer = h.append(0);
    assert_eq!(h.advance(), Vec::<u64>::new(), "window full: nothing");
    // Half the window free: the catch-up sends what the lane owes, in
    // order, and holds again where the window fills.
    h.ack([s[0]]);
    assert_eq!(h.advance(), vec![s[2]]);
    assert_eq!(h.lane_hold(0), Some(s[3]));
    h.ack([s[1], s[2]]);
    assert_eq!(h.advance(), vec![s[3], newer]);
    assert_eq!(h.lane_hold(0), None, "caught up");
    h.ack([s[3], newer]);
    assert_eq!(h.port.acknowledged, vec![s[0], s[1], s[2], s[3], newer]);
}

#[test]
fn a_failed_lane_restarts_from_its_failure_only_once_its_in_flight_settled() {
    let mut h = Harness::new(2, 4);
    let s: Vec<u64> = (0..4).map(|_| h.append(0)).collect();
    let other = h.append(1);
    assert_eq!(h.advance(), vec![s[0], s[1], s[2], s[3], other]);
    h.settle(s[1], Err(produce(RDKafkaErrorCode::NotLeaderForPartition)));
    assert_eq!(h.lane_hold(0), Some(s[1]));
    // Long past any backoff, but s[0], s[2], s[3] are still in flight.
    h.later(Duration::from_secs(10));
    let other2 = h.append(1);
    let newer = h.append(0);
    assert_eq!(
        h.advance(),
        vec![other2],
        "only the other lane moves: the newer record waits behind the failure"
    );
    h.ack([s[0]]);
    h.settle(s[2], Err(produce(RDKafkaErrorCode::NotLeaderForPartition)));
    assert_eq!(h.advance(), Vec::<u64>::new(), "s[3] is still in flight");
    h.ack([s[3]]);
    // Settled, but the backoff of its last failure has not passed yet.
    h.settle(other, Err(produce(RDKafkaErrorCode::NotLeaderForPartition)));
    assert_eq!(h.advance(), Vec::<u64>::new(), "within the backoff");
    h.later(Duration::from_secs(10));
    // From the failure: s[1] and s[2] again; s[3] was acknowledged (and is
    // removed before the catch-up reads). Partition 1 failed too, but
    // other2 is still in flight there: it waits.
    assert_eq!(h.advance(), vec![s[1], s[2], newer]);
    h.ack([other2]);
    assert_eq!(h.advance(), vec![other]);
}

#[test]
fn a_size_refusal_sends_the_lane_one_by_one_and_dead_letters_only_a_record_refused_alone() {
    let mut h = Harness::new(1, 8);
    let s: Vec<u64> = (0..4).map(|_| h.append(0)).collect();
    assert_eq!(h.advance(), s);
    // The broker refuses the batch: every record in it fails.
    for seq in &s {
        h.settle(*seq, Err(produce(RDKafkaErrorCode::MessageSizeTooLarge)));
    }
    assert!(h.port.dead_letters.is_empty(), "refused in a batch");
    assert_eq!(h.advance(), vec![s[0]], "one at a time");
    assert_eq!(h.port.sent.last(), Some(&(s[0], true)), "sent alone");
    h.ack([s[0]]);
    assert_eq!(h.advance(), vec![s[1]]);
    // Refused alone: dead-lettered, from the record the report carried.
    h.settle(s[1], Err(produce(RDKafkaErrorCode::MessageSizeTooLarge)));
    assert_eq!(
        h.port
            .dead_letters
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![s[1]]
    );
    assert!(!h.port.buffer.contains_key(&s[1]));
    assert_eq!(h.advance(), vec![s[2]]);
    h.ack([s[2]]);
    assert_eq!(h.advance(), vec![s[3]]);
    h.ack([s[3]]);
    // Past everything that was in flight with the refused batch: the
    // whole window again.
    let newer: Vec<u64> = (0..3).map(|_| h.append(0)).collect();
    assert_eq!(h.advance(), newer);
    assert!(h.port.sent[h.port.sent.len() - 3..]
        .iter()
        .all(|(_, alone)| !alone));
}

#[test]
fn a_record_librdkafka_refuses_as_too_large_is_dead_lettered_and_its_lane_goes_on() {
    let mut h = Harness::new(1, 8);
    let s: Vec<u64> = (0..3).map(|_| h.append(0)).collect();
    h.port
        .refuse
        .insert(s[1], produce(RDKafkaErrorCode::MessageSizeTooLarge));
    assert_eq!(h.advance(), vec![s[0], s[2]]);
    assert_eq!(h.port.dead_letters.len(), 1);
    assert_eq!(h.port.dead_letters[0].seq, s[1]);
}

#[test]
fn a_topic_that_takes_nothing_holds_its_records_and_sends_them_in_order_once_it_can() {
    let mut h = Harness::new(1, 8);
    h.lanes.metadata(BTreeMap::from([(
        OTHER_TOPIC.to_owned(),
        Err("it does not exist".to_owned()),
    )]));
    let q1 = h.append_other(0);
    let e1 = h.append(0);
    let q2 = h.append_other(0);
    assert_eq!(h.advance(), vec![e1], "the other topic flows");
    let t = h.topic(OTHER_TOPIC);
    assert_eq!(h.lanes.topics[t].hold.map(|h| h.from), Some(q1));
    assert_eq!(h.lanes.report()[t].backlog, 2);
    h.lanes
        .metadata(BTreeMap::from([(OTHER_TOPIC.to_owned(), Ok(1))]));
    assert_eq!(h.advance(), vec![q1, q2]);
    assert_eq!(h.lanes.topics[t].hold, None);
}

#[test]
fn a_topic_refused_by_kafka_is_blocked_alone_and_retried_after_its_backoff() {
    let mut h = Harness::new(1, 8);
    let q = h.append_other(0);
    let e = h.append(0);
    assert_eq!(h.advance(), vec![q, e]);
    h.settle(q, Err(produce(RDKafkaErrorCode::TopicAuthorizationFailed)));
    let q2 = h.append_other(0);
    let e2 = h.append(0);
    assert_eq!(h.advance(), vec![e2], "blocked: only the other topic");
    let t = h.topic(OTHER_TOPIC);
    assert!(h.lanes.report()[t].blocked.is_some());
    h.later(Duration::from_secs(10));
    assert_eq!(h.advance(), vec![q, q2]);
    h.ack([e, e2, q, q2]);
    assert_eq!(h.lanes.report()[t].blocked, None, "recovered");
}

#[test]
fn the_byte_budget_stops_the_scan_and_the_record_goes_first_once_there_is_room() {
    let mut h = Harness::new(2, 8);
    h.lanes.limits.bytes = 600;
    let s: Vec<u64> = (0..6).map(|n| h.append(n % 2)).collect();
    // Each record counts a little over 200 bytes: two fit.
    let first = h.advance();
    assert_eq!(first, &s[..2]);
    assert_eq!(h.lanes.cursor, s[1], "the unsent record is read again");
    h.ack(first);
    assert_eq!(h.advance(), &s[2..4]);
}

/// One step of a random run. Lanes 0-2 are TOPIC's partitions, 3-5
/// OTHER_TOPIC's.
#[derive(Debug, Clone)]
enum Op {
    Append(i32),
    Advance,
    /// Acknowledges the oldest record in flight on this lane.
    Ack(i32),
    /// Fails the oldest record in flight on this lane, or every one (as
    /// a refused batch or a lost leader does).
    Fail(i32, RDKafkaErrorCode, bool),
    /// The probe finds OTHER_TOPIC missing, or back.
    OtherMissing(bool),
    Later,
}

fn op() -> impl Strategy<Value = Op> {
    let lane = 0..6i32;
    let error = prop_oneof![
        Just(RDKafkaErrorCode::NotLeaderForPartition),
        Just(RDKafkaErrorCode::MessageSizeTooLarge),
        Just(RDKafkaErrorCode::TopicAuthorizationFailed),
    ];
    prop_oneof![
        6 => lane.clone().prop_map(Op::Append),
        3 => Just(Op::Advance),
        4 => lane.clone().prop_map(Op::Ack),
        2 => (lane, error, any::<bool>()).prop_map(|(l, code, all)| Op::Fail(l, code, all)),
        1 => any::<bool>().prop_map(Op::OtherMissing),
        1 => Just(Op::Later),
    ]
}

impl Harness {
    /// Records in flight on lane `lane` (as in [`Op`]), oldest first.
    fn in_flight_on(&self, lane: i32) -> Vec<u64> {
        let topic = if lane < 3 { TOPIC } else { OTHER_TOPIC };
        let key = (topic.to_owned(), lane % 3);
        self.port
            .in_flight
            .keys()
            .copied()
            .filter(|s| self.port.lane[s] == key)
            .collect()
    }
}

proptest! {
    /// Whatever the order of appends, acknowledgements, failures and
    /// topic outages: no record overtakes an older one of its lane
    /// (checked at every send by the port), and once Kafka takes
    /// everything again, every record is acknowledged or dead-lettered.
    #[test]
    fn nothing_is_lost_and_nothing_overtakes_an_older_record_of_its_lane(
        ops in proptest::collection::vec(op(), 1..200),
        per_partition in 1usize..5,
    ) {
        let mut h = Harness::new(3, per_partition);
        for op in ops {
            match op {
                Op::Append(lane) if lane < 3 => { h.append(lane); }
                Op::Append(lane) => { h.append_other(lane - 3); }
                Op::Advance => { h.advance(); }
                Op::Ack(lane) => {
                    if let Some(seq) = h.in_flight_on(lane).first() {
                        h.ack([*seq]);
                    }
                }
                Op::Fail(lane, code, all) => {
                    let in_flight = h.in_flight_on(lane);
                    let failed = if all { &in_flight[..] } else { &in_flight[..in_flight.len().min(1)] };
                    for &seq in failed {
                        h.settle(seq, Err(produce(code)));
                    }
                }
                Op::OtherMissing(missing) => {
                    let view = if missing { Err("gone".to_owned()) } else { Ok(3) };
                    h.lanes.metadata(BTreeMap::from([(OTHER_TOPIC.to_owned(), view)]));
                }
                Op::Later => h.later(Duration::from_secs(10)),
            }
        }
        // Kafka takes everything now.
        h.lanes.metadata(BTreeMap::from([(OTHER_TOPIC.to_owned(), Ok(3))]));
        for _ in 0..1_000 {
            h.later(Duration::from_secs(10));
            h.advance();
            let in_flight: Vec<u64> = h.port.in_flight.keys().copied().collect();
            h.ack(in_flight);
            h.lanes.remove_acknowledged(&mut h.port);
            if h.port.buffer.is_empty() {
                break;
            }
        }
        prop_assert!(h.port.buffer.is_empty(), "left in the buffer: {:?}", h.port.buffer.keys());
        let settled: BTreeSet<u64> = h.port.acknowledged.iter().copied()
            .chain(h.port.dead_letters.iter().map(|r| r.seq))
            .collect();
        prop_assert_eq!(settled, (1..h.next_seq).collect::<BTreeSet<u64>>());
        prop_assert_eq!(h.lanes.in_flight(), 0);
        prop_assert!(h.lanes.report().iter().all(|t| t.backlog == 0 && t.in_flight == 0));
    }
}
