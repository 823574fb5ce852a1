//! The ids of agents, queues and not-ready reasons: shared strings, cheap
//! to clone, that compare, hash, print and serialize exactly as the strings
//! they hold.
//!
//! The engine keeps one of each in its tables and hands out clones (a
//! reference count, no allocation) in every event, journal record and view.
//! Because `Hash`, `Eq` and `Ord` are those of `str` and each id is
//! `Borrow<str>`, a map keyed by ids is looked up with a plain `&str`. They
//! serialize as the bare string, so the journal, snapshots and JSON answers
//! are the same as when these fields were `String`s.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

macro_rules! shared_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&*self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                *self.0 == *other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                *self.0 == **other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                *self.0 == **other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                *self == *other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                **self == *other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                **self == *other.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::from(v))
                    }

                    fn visit_string<E: de::Error>(self, v: String) -> Result<$name, E> {
                        Ok($name::from(v))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

shared_id!(
    /// An agent's extension (the SIP user), e.g. `"1001"`.
    AgentId,
    "an agent's extension"
);

shared_id!(
    /// A queue number, e.g. `"8000"`.
    QueueId,
    "a queue number"
);

shared_id!(
    /// A not-ready reason's configured name, e.g. `"BREAK"`.
    ReasonName,
    "a not-ready reason name"
);

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};

    use super::*;

    fn hash<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn behaves_as_its_string() {
        let a = AgentId::from("1001");
        assert_eq!(hash(&a), hash("1001"));
        assert_eq!(a, "1001");
        assert_eq!("1001", a);
        assert_eq!(a.to_string(), "1001");
        assert_eq!(format!("{a:?}"), format!("{:?}", "1001"));
        assert_eq!(format!("[{a:>6}]"), "[  1001]");
        let mut qs = vec![
            QueueId::from("8001"),
            QueueId::from("80"),
            QueueId::from("8000"),
        ];
        qs.sort();
        assert_eq!(qs, ["80", "8000", "8001"]);
        let map: HashMap<AgentId, u8> = [(a.clone(), 1)].into_iter().collect();
        assert_eq!(map.get("1001"), Some(&1));
    }

    #[test]
    fn clones_share_the_string() {
        let q = QueueId::from("8000");
        let c = q.clone();
        assert!(std::ptr::eq(q.as_str(), c.as_str()));
    }

    #[test]
    fn serializes_as_the_bare_string() {
        let r = ReasonName::from("BREAK");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"BREAK\"");
        let back: ReasonName = serde_json::from_str("\"BREAK\"").unwrap();
        assert_eq!(back, r);
        let some: Option<AgentId> = serde_json::from_str("\"1001\"").unwrap();
        assert_eq!(some.as_deref(), Some("1001"));
        // An escaped string decodes to its owned form.
        let esc: QueueId = serde_json::from_str("\"80\\u0030\"").unwrap();
        assert_eq!(esc, "800");
        assert!(serde_json::from_str::<AgentId>("1001").is_err());
    }
}
