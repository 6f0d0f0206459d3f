//! Framing: every request and response is a 4-byte big-endian size followed by that many bytes.
//!
//! A size ≤ 0 or above `socket.request.max.bytes` is refused before any byte of the body is
//! read, so a hostile peer cannot make the broker allocate more than the limit.

use thiserror::Error;

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: usize = 100 * 1024 * 1024;

/// Bytes in the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// Why a frame size was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {size} is not positive")]
    NotPositive { size: i32 },
    #[error("frame size {size} exceeds socket.request.max.bytes {max}")]
    TooLarge { size: i32, max: usize },
}

/// Checks a request's size prefix against the limit and returns the body length.
pub fn check_request_size(size: i32, request_bytes_max: usize) -> Result<usize, FrameError> {
    if size <= 0 {
        return Err(FrameError::NotPositive { size });
    }
    let length = size as usize;
    if length > request_bytes_max {
        return Err(FrameError::TooLarge {
            size,
            max: request_bytes_max,
        });
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert_eq!(check_request_size(10, 100), Ok(10));
        assert_eq!(
            check_request_size(0, 100),
            Err(FrameError::NotPositive { size: 0 })
        );
        assert_eq!(
            check_request_size(-5, 100),
            Err(FrameError::NotPositive { size: -5 })
        );
        assert_eq!(
            check_request_size(101, 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
    }
}
