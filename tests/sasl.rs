//! SASL/PLAIN on a SASL_PLAINTEXT listener over raw requests: what must happen before
//! authentication (only ApiVersions and the SASL requests; anything else closes the
//! connection), the v1 handshake with SaslAuthenticate and the v0 handshake with a raw token,
//! wrong passwords and mechanisms, a second handshake, and the SASL requests on a PLAINTEXT
//! listener. Real clients are in tests/clients/python/test_sasl.py.

mod common;

use bytes::Bytes;
use common::{RawClient, TestBroker};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_broker::BrokerConfig;
use runnel_protocol::ErrorCode;

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
                    username=\"admin\" password=\"admin-secret\" user_alice=\"alice-secret\";";

fn sasl_broker() -> TestBroker {
    TestBroker::start_with(&[
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
    ])
}

fn code(error: i16) -> ErrorCode {
    ErrorCode::from_code(error).expect("a known error code")
}

fn handshake(
    client: &mut RawClient,
    version: i16,
    mechanism: &'static str,
) -> SaslHandshakeResponse {
    client.request(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
    )
}

fn authenticate(client: &mut RawClient, token: &'static [u8]) -> SaslAuthenticateResponse {
    client.request(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(token)),
    )
}

fn metadata_works(client: &mut RawClient) {
    let response: MetadataResponse = client.request(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(response.brokers.len(), 1);
}

#[test]
fn only_authenticated_connections_are_served() {
    let broker = sasl_broker();

    let mut early = RawClient::connect(broker.addr);
    early.send(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(None),
    );
    assert!(
        early.is_closed_by_broker(),
        "a request before authentication"
    );

    let mut wrong = RawClient::connect(broker.addr);
    let versions: ApiVersionsResponse =
        wrong.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16 && k.max_version == 2));
    let scram = handshake(&mut wrong, 1, "SCRAM-SHA-256");
    assert_eq!(code(scram.error_code), ErrorCode::UnsupportedSaslMechanism);
    assert_eq!(scram.mechanisms, [StrBytes::from_static_str("PLAIN")]);
    assert_eq!(
        code(handshake(&mut wrong, 1, "PLAIN").error_code),
        ErrorCode::None
    );
    let refused = authenticate(&mut wrong, b"\0alice\0not-her-password");
    assert_eq!(
        code(refused.error_code),
        ErrorCode::SaslAuthenticationFailed
    );
    assert!(refused.error_message.is_some());
    assert!(
        wrong.is_closed_by_broker(),
        "closed after a failed authentication"
    );

    let mut alice = RawClient::connect(broker.addr);
    assert_eq!(
        code(handshake(&mut alice, 1, "PLAIN").error_code),
        ErrorCode::None
    );
    assert_eq!(
        code(authenticate(&mut alice, b"\0alice\0alice-secret").error_code),
        ErrorCode::None
    );
    metadata_works(&mut alice);
    assert_eq!(
        code(handshake(&mut alice, 1, "PLAIN").error_code),
        ErrorCode::IllegalSaslState,
        "a second handshake"
    );

    // v0: the handshake is followed by one raw token, answered by an empty frame.
    let mut legacy = RawClient::connect(broker.addr);
    assert_eq!(
        code(handshake(&mut legacy, 0, "PLAIN").error_code),
        ErrorCode::None
    );
    legacy.send_frame(b"\0alice\0alice-secret");
    assert_eq!(legacy.receive_frame().as_deref(), Some(&b""[..]));
    metadata_works(&mut legacy);

    let mut legacy_wrong = RawClient::connect(broker.addr);
    assert_eq!(
        code(handshake(&mut legacy_wrong, 0, "PLAIN").error_code),
        ErrorCode::None
    );
    legacy_wrong.send_frame(b"\0alice\0nope");
    assert!(legacy_wrong.is_closed_by_broker());
}

#[test]
fn plaintext_listeners_refuse_sasl_requests_and_bad_configs_are_refused() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        code(handshake(&mut client, 1, "PLAIN").error_code),
        ErrorCode::IllegalSaslState
    );
    metadata_works(&mut client);

    let config = |pairs: &[(&str, &str)]| {
        let properties = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BrokerConfig::from_properties(&properties)
    };
    assert!(config(&[("listeners", "SSL://127.0.0.1:9093")]).is_err());
    assert!(
        config(&[("listeners", "SASL_PLAINTEXT://127.0.0.1:9093")]).is_err(),
        "no PLAIN"
    );
    assert!(
        config(&[
            ("listeners", "SASL_PLAINTEXT://127.0.0.1:9093"),
            ("sasl.enabled.mechanisms", "PLAIN"),
        ])
        .is_err(),
        "no users"
    );
    let mapped = config(&[
        ("listeners", "CLIENTS://127.0.0.1:9093"),
        ("listener.security.protocol.map", "CLIENTS:SASL_PLAINTEXT"),
        ("sasl.enabled.mechanisms", "SCRAM-SHA-512,PLAIN"),
        ("listener.name.clients.plain.sasl.jaas.config", JAAS),
    ])
    .expect("a mapped SASL listener");
    assert!(mapped.sasl_plain_users.is_some());
}
