//! Failure classes: what a Kafka error means for the record it came with
//! (the record alone, its topic, the bridge's settings, or nothing lasting),
//! for a delivery report and for a record librdkafka refused before sending.
//! What each class makes the lanes do is in `lanes.rs`.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How a failed delivery is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The record, or the batch it was in, is too large or invalid.
    RecordOrBatch,
    /// The topic cannot take records now (missing, not authorised,
    /// policy…): block it, retry later.
    Topic,
    /// Kafka refuses the bridge's settings (acks, idempotence rights,
    /// versions): stop loudly.
    Configuration,
    /// Anything else: retry this partition after a backoff.
    Transient,
}

/// The class of a delivery report's error.
pub fn classify(error: &KafkaError) -> Failure {
    use RDKafkaErrorCode::*;
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return Failure::Transient,
    };
    match code {
        MessageSizeTooLarge | InvalidMessageSize | InvalidMessage | MessageBatchTooLarge
        | InvalidRecord | InvalidTimestamp => Failure::RecordOrBatch,
        UnknownTopicOrPartition
        | UnknownTopic
        | UnknownPartition
        | TopicAuthorizationFailed
        | InvalidTopic
        | PolicyViolation
        | UnknownTopicId
        | TopicDeletionDisabled => Failure::Topic,
        InvalidRequiredAcks
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed
        | UnsupportedVersion
        | UnsupportedForMessageFormat
        | UnsupportedCompressionType
        | UnsupportedSASLMechanism
        | SaslAuthenticationFailed
        | Authentication
        | InvalidArgument => Failure::Configuration,
        _ => Failure::Transient,
    }
}

/// Whether a failed delivery means Kafka refused this record for good: a
/// size or validity refusal of a record that was sent alone (its lane in
/// one-record-at-a-time mode), so the refusal was about it and not about a
/// batch it shared. Such a record is dead-lettered.
pub fn refused_alone(error: &KafkaError, alone: bool) -> bool {
    alone && classify(error) == Failure::RecordOrBatch
}

/// Why librdkafka refused a record before it left (`send` failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its queue is full: try again after deliveries.
    QueueFull,
    /// The record alone is too large (above `message.max.bytes`):
    /// dead-letter it.
    TooLarge,
    /// Its topic or partition is unknown to the client: metadata moved,
    /// wait for the next probe.
    TopicMoved,
    /// Anything else: the client is in a fatal state, or refuses the
    /// bridge's settings.
    Other,
}

/// The class of an error `send` returned.
pub fn refusal(error: &KafkaError) -> Refusal {
    use RDKafkaErrorCode::*;
    match error {
        KafkaError::MessageProduction(QueueFull) => Refusal::QueueFull,
        KafkaError::MessageProduction(MessageSizeTooLarge | InvalidMessageSize) => {
            Refusal::TooLarge
        }
        KafkaError::MessageProduction(UnknownPartition | UnknownTopic) => Refusal::TopicMoved,
        _ => Refusal::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[test]
    fn each_error_has_its_class() {
        use RDKafkaErrorCode::*;
        for (code, class) in [
            (MessageSizeTooLarge, Failure::RecordOrBatch),
            (MessageBatchTooLarge, Failure::RecordOrBatch),
            (InvalidRecord, Failure::RecordOrBatch),
            (UnknownTopicOrPartition, Failure::Topic),
            (TopicAuthorizationFailed, Failure::Topic),
            (PolicyViolation, Failure::Topic),
            (InvalidRequiredAcks, Failure::Configuration),
            (ClusterAuthorizationFailed, Failure::Configuration),
            (SaslAuthenticationFailed, Failure::Configuration),
            (NotLeaderForPartition, Failure::Transient),
            (RequestTimedOut, Failure::Transient),
            (MessageTimedOut, Failure::Transient),
        ] {
            assert_eq!(classify(&produce(code)), class, "{code:?}");
        }
        assert_eq!(
            classify(&KafkaError::Canceled),
            Failure::Transient,
            "errors that are not about a produced record are transient"
        );
    }

    #[test]
    fn only_a_record_refused_alone_is_refused_for_good() {
        let too_large = produce(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(refused_alone(&too_large, true));
        assert!(!refused_alone(&too_large, false), "perhaps only the batch");
        let transient = produce(RDKafkaErrorCode::NotLeaderForPartition);
        assert!(!refused_alone(&transient, true));
    }

    #[test]
    fn refusals_before_sending_have_their_class() {
        use RDKafkaErrorCode::*;
        assert_eq!(refusal(&produce(QueueFull)), Refusal::QueueFull);
        assert_eq!(refusal(&produce(MessageSizeTooLarge)), Refusal::TooLarge);
        assert_eq!(refusal(&produce(InvalidMessageSize)), Refusal::TooLarge);
        assert_eq!(refusal(&produce(UnknownPartition)), Refusal::TopicMoved);
        assert_eq!(refusal(&produce(UnknownTopic)), Refusal::TopicMoved);
        assert_eq!(refusal(&produce(InvalidArgument)), Refusal::Other);
        assert_eq!(refusal(&KafkaError::Canceled), Refusal::Other);
    }
}
