//! Which partition a keyed record goes to. The bridge picks partitions
//! itself (rather than leaving it to librdkafka) so that it knows each
//! record's partition before sending and can hold back one partition
//! without holding back the others. The algorithms are librdkafka's own,
//! bit for bit (the unit tests compare with librdkafka), so a key lands
//! where any other client with the same setting puts it.

use serde::{Deserialize, Serialize};

/// How keys map to partitions (`kafka.partitioner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioner {
    /// Java's default (murmur2 of the key): a key lands on the same
    /// partition as when a Java producer, Kafka Streams or Kafka Connect
    /// writes it, so joins and co-partitioned consumers line up. The
    /// default, because the consumers of contact-centre streams are most
    /// often JVM applications.
    #[default]
    Murmur2Random,
    /// librdkafka's default (CRC32 of the key), as C, Go, Python and .NET
    /// clients place keys by default.
    ConsistentRandom,
}

impl Partitioner {
    /// The name librdkafka knows this partitioner by.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Partitioner::Murmur2Random => "murmur2_random",
            Partitioner::ConsistentRandom => "consistent_random",
        }
    }

    /// The partition of `key` among `partitions` (> 0). An empty key gets
    /// a random partition, as the `_random` in both names says.
    pub fn partition(self, key: &[u8], partitions: i32) -> i32 {
        debug_assert!(partitions > 0);
        if key.is_empty() {
            return rand::Rng::gen_range(&mut rand::thread_rng(), 0..partitions);
        }
        let hash = match self {
            Partitioner::Murmur2Random => murmur2(key) & 0x7fff_ffff,
            Partitioner::ConsistentRandom => crc32(key),
        };
        // librdkafka takes the remainder of the unsigned hash.
        (hash % partitions as u32) as i32
    }
}

/// Kafka's murmur2 (seed 0x9747b28c), as Java's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

fn crc32(data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka's own partitioner functions, called directly: for a
    /// non-empty key they are pure functions of the key and the count.
    fn librdkafka(partitioner: Partitioner, key: &[u8], partitions: i32) -> i32 {
        let f = match partitioner {
            Partitioner::Murmur2Random => {
                rdkafka::bindings::rd_kafka_msg_partitioner_murmur2_random
            }
            Partitioner::ConsistentRandom => {
                rdkafka::bindings::rd_kafka_msg_partitioner_consistent_random
            }
        };
        // SAFETY: these partitioners read only `key[..len]` for a
        // non-empty key; the topic and opaque pointers are not used then.
        unsafe {
            f(
                std::ptr::null(),
                key.as_ptr().cast(),
                key.len(),
                partitions,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }

    #[test]
    fn matches_librdkafka_bit_for_bit() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"kafka".to_vec(),
            b"1234".to_vec(),
            b"234".to_vec(),
            b"34".to_vec(),
            b"4".to_vec(),
            b"PreAmbleWillBeRemoved,ThePrePartThatIs".to_vec(),
        ];
        for i in 0..500u32 {
            keys.push(
                uuid::Uuid::from_u128(u128::from(i) * 0x9e37_79b9_7f4a_7c15)
                    .to_string()
                    .into_bytes(),
            );
        }
        for partitioner in [Partitioner::Murmur2Random, Partitioner::ConsistentRandom] {
            for key in &keys {
                for partitions in [1, 2, 3, 7, 12, 100] {
                    assert_eq!(
                        partitioner.partition(key, partitions),
                        librdkafka(partitioner, key, partitions),
                        "{partitioner:?} {:?} over {partitions}",
                        String::from_utf8_lossy(key)
                    );
                }
            }
        }
    }

    #[test]
    fn java_reference_values() {
        // Values from Kafka's own murmur2 test vectors (as published in
        // librdkafka's unit test).
        assert_eq!(murmur2(b"kafka"), 0xd067_cf64);
        assert_eq!(murmur2(b"giberish123456789"), 0x8f55_2b0c);
        assert_eq!(murmur2(b""), 0x106e_08d9);
    }
}
