//! The encoding of [`Change`]s in journal records and snapshots: a
//! versioned binary form (postcard, a compact varint encoding of the serde
//! data model), and the JSON of earlier versions, still read.
//!
//! - version 1: the byte `0x01`, then `Vec<Change>` in postcard;
//! - version 0 (JSON, written before): a JSON array, so its first byte is
//!   `[` (or whitespace).
//!
//! A record of an unknown version is an error, never skipped.

use super::Change;

/// The first byte of a version 1 record.
const V1: u8 = 0x01;

/// Why a record did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Empty.
    #[error("empty record")]
    Empty,
    /// An unknown version byte.
    #[error("unknown record version {0:#04x}")]
    Version(u8),
    /// A version 1 record that does not decode.
    #[error("binary record: {0}")]
    Binary(#[from] postcard::Error),
    /// A JSON record that does not decode.
    #[error("JSON record: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes `changes` as a version 1 record. (Never inlined: the
/// callgrind benchmark counts its calls, one per journaled change, plus the
/// snapshots at start and stop.)
#[inline(never)]
pub fn encode(changes: &[Change]) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::with_capacity(16 + 64 * changes.len());
    out.push(V1);
    postcard::to_extend(changes, out)
}

/// Decodes a record of any version.
pub fn decode(record: &[u8]) -> Result<Vec<Change>, DecodeError> {
    match record.first() {
        None => Err(DecodeError::Empty),
        Some(&V1) => {
            let (changes, rest) = postcard::take_from_bytes::<Vec<Change>>(&record[1..])?;
            if rest.is_empty() {
                Ok(changes)
            } else {
                Err(DecodeError::Binary(postcard::Error::DeserializeBadEncoding))
            }
        }
        Some(b'[' | b' ' | b'\n' | b'\r' | b'\t') => Ok(serde_json::from_slice(record)?),
        Some(&b) => Err(DecodeError::Version(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AgentState, Call, CallKind, Cell, Member, Wanted};
    use super::*;

    fn sample() -> Vec<Change> {
        vec![
            Change::Membership {
                agent: "1001".into(),
                queues: vec![Member {
                    queue: "8000".into(),
                    skill_level: 7,
                }],
            },
            Change::Cell {
                agent: "1001".into(),
                queue: "8000".into(),
                cell: Cell {
                    state: AgentState::NotReady,
                    reason: Some("BREAK".into()),
                    pending: Some(Wanted {
                        state: AgentState::Ready,
                        reason: None,
                    }),
                    since: 1_780_000_000_123,
                    wrap_up_until: Some(1_780_000_030_123),
                    before_call: None,
                },
            },
            Change::Calls {
                agent: "1001".into(),
                calls: vec![
                    Call {
                        call_id: "c1@pbx".into(),
                        kind: CallKind::Acd {
                            queue: "8000".into(),
                        },
                    },
                    Call {
                        call_id: "c2".into(),
                        kind: CallKind::Other,
                    },
                ],
            },
        ]
    }

    #[test]
    fn binary_records_round_trip_and_are_smaller_than_json() {
        let changes = sample();
        let bin = encode(&changes).unwrap();
        assert_eq!(bin[0], V1);
        assert_eq!(decode(&bin).unwrap(), changes);
        let json = serde_json::to_vec(&changes).unwrap();
        assert!(
            bin.len() * 2 < json.len(),
            "{} vs {}",
            bin.len(),
            json.len()
        );
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), Vec::new());
    }

    #[test]
    fn json_records_of_earlier_versions_still_decode() {
        let changes = sample();
        let json = serde_json::to_vec(&changes).unwrap();
        assert_eq!(decode(&json).unwrap(), changes);
        let pretty = serde_json::to_vec_pretty(&changes).unwrap();
        assert_eq!(decode(&pretty).unwrap(), changes);
    }

    #[test]
    fn damaged_or_unknown_records_are_errors() {
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"\x07abc"), Err(DecodeError::Version(7))));
        let bin = encode(&sample()).unwrap();
        for cut in 1..bin.len() {
            assert!(decode(&bin[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bin.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        assert!(matches!(decode(b"[{\"Cell\""), Err(DecodeError::Json(_))));
    }
}
