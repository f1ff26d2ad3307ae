//! Finds the line and column of a key path in a YAML document.
//!
//! Cross-field checks run after deserialization, when positions are gone. To
//! point at the offending key anyway, we replay the document through
//! `serde_norway` with a seed that walks down the key path and fails on
//! arrival: `serde_norway` attaches the position of the value being read to
//! any error, so the error's location is the value's position — the same
//! position it reports for type errors. Same parser, so no disagreement about
//! what the document says.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

use super::error::{KeyPath, Location, Seg};

/// Position of the value at `path`, or of its nearest ancestor present in the
/// document; line 1 column 1 when nothing can be found.
pub(crate) fn locate(text: &str, path: &KeyPath) -> Location {
    for len in (0..=path.0.len()).rev() {
        if let Some(at) = locate_exact(text, &path.0[..len]) {
            return at;
        }
    }
    Location { line: 1, column: 1 }
}

fn locate_exact(text: &str, path: &[Seg]) -> Option<Location> {
    let de = serde_norway::Deserializer::from_str(text);
    match (Walk { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        }),
    }
}

/// Walks to `path`; errors (carrying the position) when it gets there, `Ok`
/// when the path does not exist.
struct Walk<'a> {
    path: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Any scalar at a position we only pass through.
macro_rules! pass_scalar {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name<E: de::Error>(self, _v: $ty) -> Result<(), E> {
            self.arrived()
        }
    )*};
}

impl Walk<'_> {
    fn arrived<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom("located"))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    pass_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
        visit_u128: u128, visit_f64: f64, visit_char: char, visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.arrived()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.arrived()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`); we never descend into those.
        self.arrived()?;
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant::<IgnoredAny>(variant).map(|_| ())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.arrived()?;
        let want = match self.path.first() {
            Some(Seg::Index(i)) => Some(*i),
            _ => None,
        };
        let mut i = 0;
        loop {
            if want == Some(i) {
                if seq
                    .next_element_seed(Walk {
                        path: &self.path[1..],
                    })?
                    .is_none()
                {
                    return Ok(());
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.arrived()?;
        let want = match self.path.first() {
            Some(Seg::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if want.is_some() && key.0.as_deref() == want {
                map.next_value_seed(Walk {
                    path: &self.path[1..],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A mapping key as text, when it is a scalar.
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: KeyPath) -> (usize, usize) {
        let l = locate(text, &path);
        (l.line, l.column)
    }

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        let text = "global:\n  interval: 5s\nportals:\n  - id: a\n  - id: b\n    interval: 1s\n";
        let root = KeyPath::root();
        assert_eq!(at(text, root.key("global").key("interval")), (2, 13));
        assert_eq!(at(text, root.key("portals").index(1).key("id")), (5, 9));
        assert_eq!(
            at(text, root.key("portals").index(1).key("interval")),
            (6, 15)
        );
        assert_eq!(at(text, root.key("portals").index(1)), (5, 5));
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let text = "# comment\nglobal:\n  interval: 5s\n";
        let root = KeyPath::root();
        assert_eq!(at(text, root.key("global").key("timeout")), (3, 3));
        assert_eq!(at(text, root.key("portals")), (2, 1));
        assert_eq!(at("", root.key("portals")), (1, 1));
    }

    #[test]
    fn flow_style_and_aliases() {
        let text = "global: {labels: {a: b}}\nportals: [{id: x}, {id: y}]\n";
        let root = KeyPath::root();
        assert_eq!(at(text, root.key("portals").index(1).key("id")), (2, 25));
        assert_eq!(at(text, root.key("global").key("labels").key("a")), (1, 22));
    }
}
