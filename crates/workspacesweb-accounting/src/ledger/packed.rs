//! Compact serialization of session ids and usernames in the ledger's state: a 36-character
//! lowercase UUID (a session id) as its 16 bytes, 16 lowercase hex digits (a hashed username) as
//! their 8 bytes, anything else as the string itself. Reading accepts all three (and a sequence of
//! bytes, as JSON writes them) and gives back the exact string.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;

/// Dashes of a UUID, by position in its 36 characters.
const DASHES: [usize; 4] = [8, 13, 18, 23];

/// The value of each lowercase hex digit, by byte; `BAD` (its high bit) for any other byte.
const HEX: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// What [`HEX`] holds for a byte that is not a lowercase hex digit.
const BAD: u8 = 0x80;

/// Where each byte's two hex digits begin in a UUID (its dashes skipped).
const UUID_PAIRS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// Where each byte's two hex digits begin in 16 hex digits.
const HEX_PAIRS: [usize; 8] = [0, 2, 4, 6, 8, 10, 12, 14];

/// The bytes of lowercase hex digits (skipping the dashes of a UUID), if `s` is one of the two
/// shapes: 16 bytes for a UUID, 8 for 16 hex digits. It runs for every id and name of every
/// write: no allocation, the digit pairs at fixed offsets, and no branch per digit (a table
/// lookup; one check of every digit at the end): branches on random digits mispredict.
fn pack(s: &str) -> Option<([u8; 16], usize)> {
    let b = s.as_bytes();
    let pairs: &[usize] = match b.len() {
        36 if DASHES.iter().all(|&i| b[i] == b'-') => &UUID_PAIRS,
        16 => &HEX_PAIRS,
        _ => return None,
    };
    let mut out = [0u8; 16];
    let mut seen = 0u8;
    for (o, &i) in out.iter_mut().zip(pairs) {
        let (hi, lo) = (HEX[usize::from(b[i])], HEX[usize::from(b[i + 1])]);
        seen |= hi | lo;
        *o = hi << 4 | lo;
    }
    (seen & BAD == 0).then_some((out, pairs.len()))
}

fn unpack(bytes: &[u8]) -> Option<String> {
    let mut s = String::with_capacity(36);
    match bytes.len() {
        16 => {
            for (i, b) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{b:02x}");
            }
        }
        8 => {
            for b in bytes {
                let _ = write!(s, "{b:02x}");
            }
        }
        _ => return None,
    }
    Some(s)
}

/// Writes `s` packed when it has one of the two shapes.
pub(super) fn serialize<S: AsRef<str>, Z: Serializer>(s: &S, z: Z) -> Result<Z::Ok, Z::Error> {
    match pack(s.as_ref()) {
        Some((bytes, n)) => z.serialize_bytes(&bytes[..n]),
        None => z.serialize_str(s.as_ref()),
    }
}

/// Reads what [`serialize`] wrote.
pub(super) fn deserialize<'de, D: Deserializer<'de>, S: From<String>>(d: D) -> Result<S, D::Error> {
    d.deserialize_any(PackedVisitor).map(S::from)
}

struct PackedVisitor;

impl<'de> Visitor<'de> for PackedVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, or 8 or 16 bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<String, E> {
        unpack(v).ok_or_else(|| E::invalid_length(v.len(), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let mut bytes = Vec::with_capacity(16);
        while let Some(b) = seq.next_element::<u8>()? {
            if bytes.len() == 16 {
                return Err(de::Error::invalid_length(17, &self));
            }
            bytes.push(b);
        }
        self.visit_bytes(&bytes)
    }
}

/// An element of a long list whose string (a session id, a username) lives behind a pointer.
pub(super) trait Keyed {
    /// The string.
    fn key(&self) -> &str;
}

/// How many elements [`warm_list`] loads ahead.
const WARM_BLOCK: usize = 64;

/// Writes `v` as a list, block by block: it first reads the first and last byte of each string
/// of a block in a loop that does nothing else, then serializes the block. The strings are
/// scattered over the heap: read one by one as the encoder reaches them, each is a cache and TLB
/// miss that waits alone; in a loop this short the processor has the misses of many in flight.
pub(super) fn warm_list<T: Keyed + serde::Serialize, Z: Serializer>(
    v: &[T],
    z: Z,
) -> Result<Z::Ok, Z::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = z.serialize_seq(Some(v.len()))?;
    for block in v.chunks(WARM_BLOCK) {
        let mut touched = 0u8;
        for t in block {
            let b = t.key().as_bytes();
            touched ^= b.first().copied().unwrap_or(0) ^ b.last().copied().unwrap_or(0);
        }
        // Keeps the reads (nothing else uses their value).
        std::hint::black_box(touched);
        for t in block {
            seq.serialize_element(t)?;
        }
    }
    seq.end()
}

/// The same for a list of strings.
pub(super) mod list {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::{SerializeSeq, Serializer};
    use std::fmt;

    /// A wrapper that serializes one string packed.
    struct One<'a, S>(&'a S);

    impl<S: AsRef<str>> serde::Serialize for One<'_, S> {
        fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
            super::serialize(self.0, z)
        }
    }

    /// A wrapper that reads one packed string.
    struct Owned(String);

    impl<'de> serde::Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::deserialize(d).map(Owned)
        }
    }

    pub(in crate::ledger) fn serialize<S: AsRef<str>, Z: Serializer>(
        v: &[S],
        z: Z,
    ) -> Result<Z::Ok, Z::Error> {
        let mut seq = z.serialize_seq(Some(v.len()))?;
        for s in v {
            seq.serialize_element(&One(s))?;
        }
        seq.end()
    }

    pub(in crate::ledger) fn deserialize<'de, D: Deserializer<'de>, S: From<String>>(
        d: D,
    ) -> Result<Vec<S>, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(Owned(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        Ok(d.deserialize_seq(ListVisitor)?
            .into_iter()
            .map(S::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Item(String, usize);

    impl Keyed for Item {
        fn key(&self) -> &str {
            &self.0
        }
    }

    #[test]
    fn a_list_written_in_warmed_blocks_is_the_list() {
        struct Warm<'a>(&'a [Item]);
        impl serde::Serialize for Warm<'_> {
            fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
                warm_list(self.0, z)
            }
        }
        // Empty, shorter than a block, exactly one, and across block boundaries.
        for n in [0, 1, WARM_BLOCK, WARM_BLOCK + 1, 2 * WARM_BLOCK + 7] {
            let v: Vec<Item> = (0..n).map(|i| Item(format!("u{i}"), i)).collect();
            let warm = serde_json::to_string(&Warm(&v)).expect("serializes");
            assert_eq!(warm, serde_json::to_string(&v).expect("serializes"), "{n}");
        }
    }

    #[test]
    fn uuids_and_hashes_pack_and_come_back_exactly() {
        for s in [
            "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "b1b68da447843a65",
            "00000000-0000-0000-0000-000000000000",
        ] {
            let (p, n) = pack(s).expect("packs");
            assert_eq!(n, if s.len() == 36 { 16 } else { 8 });
            assert_eq!(unpack(&p[..n]).as_deref(), Some(s));
        }
        // Not the exact shapes: kept as strings (round trips would change them).
        for s in [
            "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
            "B1B68DA447843A65",
            "b1b68da447843a6",
            "alice@example.com",
            "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4-",
            "0a1b2c3d4-e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "0a1b2c3d-4e5f-4a6b-8c7d--e0f1a2b3c4d",
            "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4g",
            "-a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "é1b68da447843a6",
            "",
        ] {
            assert_eq!(pack(s), None, "{s}");
        }
        // Every digit at every position of both shapes.
        for d in 0..16u8 {
            let c = char::from_digit(u32::from(d), 16).expect("a digit");
            for pos in 0..36 {
                let mut id: Vec<char> = "00000000-0000-0000-0000-000000000000".chars().collect();
                if id[pos] != '-' {
                    id[pos] = c;
                    let id: String = id.into_iter().collect();
                    let (p, n) = pack(&id).expect("packs");
                    assert_eq!(unpack(&p[..n]).as_deref(), Some(id.as_str()));
                }
            }
            let h: String = (0..16)
                .map(|i| if i == usize::from(d) { c } else { 'f' })
                .collect();
            let (p, n) = pack(&h).expect("packs");
            assert_eq!(unpack(&p[..n]).as_deref(), Some(h.as_str()));
        }
    }
}
