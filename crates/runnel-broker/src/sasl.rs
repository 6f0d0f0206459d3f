//! SASL/PLAIN authentication on a `SASL_PLAINTEXT` listener, as Kafka does it.
//!
//! Configuration, with Kafka's names: `listeners=SASL_PLAINTEXT://host:port` (or a listener
//! name mapped to `SASL_PLAINTEXT` by `listener.security.protocol.map`),
//! `sasl.enabled.mechanisms` including `PLAIN`, and the users in
//! `listener.name.<listener>.plain.sasl.jaas.config`, as `PlainLoginModule`'s
//! `user_<name>="<password>"` options.
//!
//! Per connection ([`SaslState`]): until authenticated, a connection may send only
//! ApiVersions, SaslHandshake and then SaslAuthenticate; anything else closes it. SaslHandshake
//! v1 is followed by SaslAuthenticate requests; v0 by one raw, size-prefixed PLAIN token
//! answered by an empty frame. The PLAIN token is `authzid NUL username NUL password`. A
//! failed authentication answers `SASL_AUTHENTICATION_FAILED` and closes the connection. On
//! a `PLAINTEXT` listener, and after authentication, both SASL requests are
//! `ILLEGAL_SASL_STATE`. Passwords are compared in constant time.
//!
//! These two requests are handled here rather than in `api/`: they change the connection's
//! state, which no other handler sees.

use std::collections::BTreeMap;

use bytes::Bytes;
use runnel_protocol::api_versions::is_served;
use runnel_protocol::header::{self, CodecError};
use runnel_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use runnel_protocol::{ErrorCode, StrBytes};

/// The only mechanism served.
pub const PLAIN: &str = "PLAIN";

/// The users a PLAIN listener accepts: name → password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlainUsers {
    users: BTreeMap<String, String>,
}

impl PlainUsers {
    /// Reads `PlainLoginModule`'s options from a JAAS config line:
    /// `org.apache.kafka.common.security.plain.PlainLoginModule required username="admin"
    /// password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";`.
    pub fn from_jaas_config(text: &str) -> Result<PlainUsers, String> {
        let text = text.trim().trim_end_matches(';');
        let mut words = text.splitn(3, char::is_whitespace);
        let module = words.next().unwrap_or_default();
        if !module.ends_with("PlainLoginModule") {
            return Err(format!("expected PlainLoginModule, not {module:?}"));
        }
        let mut users = BTreeMap::new();
        let mut rest = words.nth(1).unwrap_or_default().trim();
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once('=')
                .ok_or_else(|| format!("expected key=\"value\" at {rest:?}"))?;
            let after = after
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| format!("the value of {} is not quoted", key.trim()))?;
            let (value, tail) = after
                .split_once('"')
                .ok_or_else(|| format!("the value of {} is not closed", key.trim()))?;
            if let Some(user) = key.trim().strip_prefix("user_") {
                users.insert(user.to_string(), value.to_string());
            }
            rest = tail.trim_start();
        }
        if users.is_empty() {
            return Err("no user_<name>=\"<password>\" option".into());
        }
        Ok(PlainUsers { users })
    }

    /// Whether `token` (`authzid NUL username NUL password`) names a user with that password.
    /// An authorization id, if any, must be the user itself (Kafka's rule).
    pub fn authenticate(&self, token: &[u8]) -> Option<String> {
        let mut parts = token.split(|byte| *byte == 0);
        let (authzid, username, password) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let username = std::str::from_utf8(username).ok()?;
        if !authzid.is_empty() && authzid != username.as_bytes() {
            return None;
        }
        let expected = self.users.get(username)?;
        constant_time_eq(expected.as_bytes(), password).then(|| username.to_string())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        differ |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    differ == 0
}

/// Where a connection is in authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslState {
    /// A PLAINTEXT listener: nothing to do.
    Plaintext,
    /// A SASL listener, before a successful handshake.
    AwaitingHandshake,
    /// After SaslHandshake v1: SaslAuthenticate requests follow.
    AwaitingAuthenticate,
    /// After SaslHandshake v0: the next frame is a raw PLAIN token.
    AwaitingRawToken,
    /// Authenticated as this user.
    Authenticated(String),
}

/// What the connection does with a frame while authenticating.
pub enum Step {
    /// Not an authentication matter: dispatch it as usual.
    Dispatch,
    /// Send this response and go on.
    Respond(Bytes),
    /// Send this response, then close the connection.
    RespondAndClose(Bytes),
    /// Close the connection without an answer.
    Close(String),
}

impl SaslState {
    pub fn new(sasl: bool) -> SaslState {
        if sasl {
            SaslState::AwaitingHandshake
        } else {
            SaslState::Plaintext
        }
    }

    /// Handles `frame` (a whole request, or a raw token after a v0 handshake) if it belongs to
    /// authentication, or refuses it if it comes too early. `users` is `None` on a PLAINTEXT
    /// listener.
    pub fn step(
        &mut self,
        users: Option<&PlainUsers>,
        frame: &mut Bytes,
    ) -> Result<Step, CodecError> {
        let no_users = PlainUsers::default();
        let users = users.unwrap_or(&no_users);
        if *self == SaslState::AwaitingRawToken {
            return Ok(match users.authenticate(frame) {
                Some(user) => {
                    tracing::debug!(%user, "SASL/PLAIN authenticated (v0 token)");
                    *self = SaslState::Authenticated(user);
                    Step::Respond(Bytes::from_static(&[0, 0, 0, 0]))
                }
                None => {
                    tracing::info!("SASL/PLAIN authentication failed (v0 token)");
                    Step::Close("SASL/PLAIN authentication failed (v0 token)".into())
                }
            });
        }
        let raw = header::RawRequestHeader::peek(frame)?;
        let api = ApiKey::try_from(raw.api_key).ok();
        let served = is_served(raw.api_key, raw.api_version);
        match (api, &*self) {
            // An unserved version is answered UNSUPPORTED_VERSION by the usual path.
            (Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate), _) if !served => {
                Ok(Step::Dispatch)
            }
            (Some(ApiKey::SaslHandshake), _) => {
                self.handshake(raw.api_version, frame).map(Step::Respond)
            }
            (Some(ApiKey::SaslAuthenticate), _) => self.authenticate(users, raw.api_version, frame),
            (_, SaslState::Plaintext | SaslState::Authenticated(_)) => Ok(Step::Dispatch),
            (Some(ApiKey::ApiVersions), _) => Ok(Step::Dispatch),
            (_, _) => Ok(Step::Close(format!(
                "request with api key {} before SASL authentication",
                raw.api_key
            ))),
        }
    }

    fn handshake(&mut self, version: i16, frame: &mut Bytes) -> Result<Bytes, CodecError> {
        let raw = header::RawRequestHeader::peek(frame)?;
        header::decode_request_header(ApiKey::SaslHandshake, version, frame)?;
        let request: SaslHandshakeRequest =
            header::decode_body(ApiKey::SaslHandshake, version, frame)?;
        let error = match self {
            SaslState::AwaitingHandshake if request.mechanism.as_str() == PLAIN => {
                *self = if version == 0 {
                    SaslState::AwaitingRawToken
                } else {
                    SaslState::AwaitingAuthenticate
                };
                ErrorCode::None
            }
            SaslState::AwaitingHandshake => ErrorCode::UnsupportedSaslMechanism,
            _ => ErrorCode::IllegalSaslState,
        };
        let response = SaslHandshakeResponse::default()
            .with_error_code(error.code())
            .with_mechanisms(vec![StrBytes::from_static_str(PLAIN)]);
        header::encode_response(
            ApiKey::SaslHandshake,
            version,
            raw.correlation_id,
            &response,
        )
    }

    fn authenticate(
        &mut self,
        users: &PlainUsers,
        version: i16,
        frame: &mut Bytes,
    ) -> Result<Step, CodecError> {
        let raw = header::RawRequestHeader::peek(frame)?;
        header::decode_request_header(ApiKey::SaslAuthenticate, version, frame)?;
        let request: SaslAuthenticateRequest =
            header::decode_body(ApiKey::SaslAuthenticate, version, frame)?;
        let respond = |error: ErrorCode, message: Option<&str>| {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(error.code())
                .with_error_message(message.map(|m| StrBytes::from_string(m.to_string())));
            header::encode_response(
                ApiKey::SaslAuthenticate,
                version,
                raw.correlation_id,
                &response,
            )
        };
        if *self != SaslState::AwaitingAuthenticate {
            return Ok(Step::Respond(respond(
                ErrorCode::IllegalSaslState,
                Some("SaslAuthenticate is only expected after a SaslHandshake v1"),
            )?));
        }
        match users.authenticate(&request.auth_bytes) {
            Some(user) => {
                tracing::debug!(%user, "SASL/PLAIN authenticated");
                *self = SaslState::Authenticated(user);
                Ok(Step::Respond(respond(ErrorCode::None, None)?))
            }
            None => {
                tracing::info!("SASL/PLAIN authentication failed");
                Ok(Step::RespondAndClose(respond(
                    ErrorCode::SaslAuthenticationFailed,
                    Some("Authentication failed: Invalid username or password"),
                )?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret"
        user_admin="admin-secret" user_alice="alice secret";"#;

    #[test]
    fn jaas_users_and_plain_tokens() {
        let users = PlainUsers::from_jaas_config(JAAS).expect("parses");
        assert_eq!(users.users.len(), 2);
        assert_eq!(
            users.authenticate(b"\0alice\0alice secret").as_deref(),
            Some("alice")
        );
        assert_eq!(
            users.authenticate(b"alice\0alice\0alice secret").as_deref(),
            Some("alice")
        );
        assert_eq!(
            users.authenticate(b"admin\0alice\0alice secret"),
            None,
            "authzid of another user"
        );
        assert_eq!(users.authenticate(b"\0alice\0wrong"), None);
        assert_eq!(users.authenticate(b"\0alice\0alice secretX"), None);
        assert_eq!(users.authenticate(b"\0nobody\0x"), None);
        assert_eq!(users.authenticate(b"\0alice"), None);
        assert_eq!(users.authenticate(b"\0alice\0alice secret\0more"), None);
        assert!(PlainUsers::from_jaas_config("ScramLoginModule required;").is_err());
        assert!(
            PlainUsers::from_jaas_config("x.PlainLoginModule required username=\"a\";").is_err()
        );
        assert!(PlainUsers::from_jaas_config("x.PlainLoginModule required user_a=b;").is_err());
    }
}
