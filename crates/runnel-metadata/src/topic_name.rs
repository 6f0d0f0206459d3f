//! Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.

use thiserror::Error;

/// Kafka's limit: 249, so that `<topic>-<partition>` directory names fit in 255 bytes.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// Why a topic name is not legal.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidTopicName {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error("topic name is {length} characters, longer than {TOPIC_NAME_LENGTH_MAX}")]
    TooLong { length: usize },
    #[error(
        "topic name {name:?} contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    )]
    IllegalCharacter { name: String },
}

pub fn validate_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    if name.is_empty() {
        return Err(InvalidTopicName::Empty);
    }
    if name == "." || name == ".." {
        return Err(InvalidTopicName::Dots);
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(InvalidTopicName::TooLong { length: name.len() });
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(legal) {
        return Err(InvalidTopicName::IllegalCharacter {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        assert!(validate_topic_name("orders.v1_2-x").is_ok());
        assert_eq!(validate_topic_name(""), Err(InvalidTopicName::Empty));
        assert_eq!(validate_topic_name(".."), Err(InvalidTopicName::Dots));
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name("ä").is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
