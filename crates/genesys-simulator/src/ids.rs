//! Identifiers: stable UUIDs for the directory (the same queue has the same id
//! on every run, so demos and tests can hard-code them), random ones for
//! everything that must be unique.

use rand::distributions::Alphanumeric;
use rand::Rng;
use uuid::Uuid;

/// SplitMix64: a tiny, well-known mixer. Used instead of a seeded `StdRng`
/// because its output is fixed forever, not just within one `rand` version.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a, to derive stable numbers from strings (e.g. a conversation id).
pub(crate) fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A version-4-shaped UUID that depends only on `(namespace, n)`.
pub(crate) fn stable_uuid(namespace: u64, n: u64) -> Uuid {
    let hi = splitmix64(namespace.wrapping_mul(0x1000_0000_01B3) ^ n);
    let lo = splitmix64(hi ^ n.rotate_left(17));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A version-4 UUID drawn from `rng` (seeded generators give repeatable bodies).
pub(crate) fn uuid_from(rng: &mut impl Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

/// Channel ids look like `streaming-0-fmtdmf8cdis7jh14udg5p89t6z`: not UUIDs.
pub(crate) fn channel_id() -> String {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..26)
        .map(|_| {
            let c = rng.sample(Alphanumeric) as char;
            c.to_ascii_lowercase()
        })
        .collect();
    format!("streaming-0-{suffix}")
}

/// An opaque bearer token (86 URL-safe characters, like real ones).
pub(crate) fn access_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 64] = std::array::from_fn(|_| rand::random());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What may appear in logs about a token: its first characters only.
pub(crate) fn token_prefix(token: &str) -> &str {
    token.get(..6).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_uuids_are_stable_distinct_and_v4_shaped() {
        let a = stable_uuid(1, 0);
        assert_eq!(a, stable_uuid(1, 0));
        assert_ne!(a, stable_uuid(1, 1));
        assert_ne!(a, stable_uuid(2, 0));
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn channel_ids_and_tokens_look_real() {
        let id = channel_id();
        assert!(id.starts_with("streaming-0-") && id.len() == 38, "{id}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_ne!(channel_id(), id);
        let token = access_token();
        assert_eq!(token.len(), 86);
        assert_eq!(token_prefix(&token).len(), 6);
    }
}
