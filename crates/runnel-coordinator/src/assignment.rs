//! Decoding a consumer group member's assignment: Kafka's `ConsumerProtocolAssignment`, the
//! bytes the group's leader sends through SyncGroup for the `consumer` protocol type.
//!
//! Layout (big-endian, never flexible, every version 0-3 alike up to the fields read here):
//! `version: i16`, then `assigned_partitions: [topic: string (i16 length), partitions: [i32]]`
//! with i32 array counts, then user data we do not read. Bytes that do not parse (another
//! protocol type, a truncated assignment) decode to no partitions rather than an error: the
//! assignment is the client's, and a tool only displays it.

/// (topic, partition) pairs of an assignment, in the order the leader wrote them.
pub fn decode_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    parse(bytes).unwrap_or_default()
}

fn parse(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut reader = Reader { bytes };
    let _version = reader.i16()?;
    let topics = reader.count()?;
    let mut assigned = Vec::new();
    for _ in 0..topics {
        let length = usize::try_from(reader.i16()?).ok()?;
        let topic = std::str::from_utf8(reader.take(length)?).ok()?.to_string();
        for _ in 0..reader.count()? {
            assigned.push((topic.clone(), reader.i32()?));
        }
    }
    Some(assigned)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// An array count: -1 (null) is empty; a count larger than the bytes left is malformed.
    fn count(&mut self) -> Option<usize> {
        let count = self.i32()?;
        if count < 0 {
            return Some(0);
        }
        let count = usize::try_from(count).ok()?;
        (count <= self.bytes.len()).then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 1i16.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            bytes.extend((topic.len() as i16).to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                bytes.extend(p.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes()); // null user data
        bytes
    }

    #[test]
    fn decodes_topics_and_partitions() {
        let bytes = assignment(&[("orders", &[0, 2]), ("audit", &[1])]);
        assert_eq!(
            decode_assignment(&bytes),
            [
                ("orders".to_string(), 0),
                ("orders".to_string(), 2),
                ("audit".to_string(), 1)
            ]
        );
    }

    #[test]
    fn malformed_bytes_decode_to_nothing() {
        let bytes = assignment(&[("orders", &[0, 2])]);
        for cut in 0..bytes.len() - 4 {
            assert_eq!(decode_assignment(&bytes[..cut]), [], "cut at {cut}");
        }
        assert_eq!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), []);
    }
}
