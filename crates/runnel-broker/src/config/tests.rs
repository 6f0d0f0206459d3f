//! Tests of reading broker and topic configuration.

use super::*;

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_durable_and_listen_locally() {
    let config = BrokerConfig::from_properties(&BTreeMap::new()).expect("defaults");
    assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
    assert!(config.flush.is_durable());
    assert_eq!(config.message_max_bytes, 1_048_588);
    assert_eq!(config.socket_request_max_bytes, 100 * 1024 * 1024);
}

#[test]
fn kafka_names_are_read() {
    let config = BrokerConfig::from_properties(&props(&[
        ("listeners", "PLAINTEXT://0.0.0.0:19092"),
        ("advertised.listeners", "PLAINTEXT://kafka.local:19092"),
        ("num.partitions", "6"),
        ("log.flush.interval.messages", "10000"),
        ("auto.create.topics.enable", "false"),
    ]))
    .expect("valid");
    assert_eq!(config.listen.port(), 19092);
    assert_eq!(
        config.advertised_listener,
        Some(AdvertisedListener {
            host: "kafka.local".into(),
            port: 19092
        })
    );
    assert_eq!(config.num_partitions, 6);
    assert!(!config.flush.is_durable());
    assert!(!config.auto_create_topics_enable);
}

#[test]
fn bad_values_name_the_key() {
    let error =
        BrokerConfig::from_properties(&props(&[("num.partitions", "zero")])).expect_err("invalid");
    assert_eq!(error.key, "num.partitions");
    assert!(BrokerConfig::from_properties(&props(&[("num.partitions", "0")])).is_err());
}

#[test]
fn connection_limits_are_read_and_checked() {
    let config = BrokerConfig::from_properties(&props(&[
        ("max.connections.per.ip", "5"),
        ("max.connections.per.ip.overrides", "10.0.0.1:2, ::1:7"),
        ("connections.max.idle.ms", "-1"),
        ("queued.max.request.bytes", "-1"),
    ]))
    .expect("valid");
    assert_eq!(config.connections_max_per_ip, 5);
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    assert_eq!(config.connections_max_per_ip_overrides[&ip("10.0.0.1")], 2);
    assert_eq!(config.connections_max_per_ip_overrides[&ip("::1")], 7);
    assert_eq!(config.connections_max_idle_ms, None);
    assert_eq!(config.queued_max_request_bytes, None);
    let defaults = BrokerConfig::default();
    assert_eq!(defaults.connections_max_idle_ms, Some(600_000));
    assert_eq!(defaults.queued_max_request_bytes, Some(256 << 20));

    let error = BrokerConfig::from_properties(&props(&[
        ("socket.request.max.bytes", "2000"),
        ("queued.max.request.bytes", "1000"),
    ]))
    .expect_err("a pool smaller than a frame");
    assert_eq!(error.key, "queued.max.request.bytes");
    let error = BrokerConfig::from_properties(&props(&[("max.connections.per.ip", "0")]))
        .expect_err("zero without overrides");
    assert_eq!(error.key, "max.connections.per.ip");
    let error = BrokerConfig::from_properties(&props(&[(
        "max.connections.per.ip.overrides",
        "kafka.local:3",
    )]))
    .expect_err("a host name");
    assert_eq!(error.key, "max.connections.per.ip.overrides");
}

#[test]
fn listeners_take_host_names() {
    let config =
        BrokerConfig::from_properties(&props(&[("listeners", "PLAINTEXT://localhost:19092")]))
            .expect("a host name is accepted");
    assert!(config.listen.ip().is_loopback(), "{}", config.listen);
    assert_eq!(config.listen.port(), 19092);
    assert_eq!(config.listen_host.as_deref(), Some("localhost"));
    let any = BrokerConfig::from_properties(&props(&[("listeners", "PLAINTEXT://:9092")]))
        .expect("an empty host");
    assert!(any.listen.ip().is_unspecified());
    assert_eq!(any.listen_host, None);
    assert!(BrokerConfig::from_properties(&props(&[("listeners", "localhost")])).is_err());
}

#[test]
fn log_dirs_are_a_comma_separated_list_led_by_the_data_dir() {
    let properties: BTreeMap<String, String> =
        [("log.dirs".to_string(), "/a, /b,,/a".to_string())].into();
    let config = BrokerConfig::from_properties(&properties).expect("valid");
    assert_eq!(config.data_dir, PathBuf::from("/a"));
    assert_eq!(
        config.log_dirs(),
        vec![PathBuf::from("/a"), PathBuf::from("/b")]
    );
    let single = BrokerConfig::from_properties(&BTreeMap::new()).expect("defaults");
    assert_eq!(single.log_dirs(), vec![PathBuf::from("./data")]);
}

#[test]
fn properties_files_parse() {
    let parsed = parse_properties("# c\n! c\nnode.id=3\nlog.dirs : /tmp/x\n\n").expect("ok");
    assert_eq!(parsed.get("node.id").map(String::as_str), Some("3"));
    assert_eq!(parsed.get("log.dirs").map(String::as_str), Some("/tmp/x"));
    assert!(parse_properties("novalue").is_err());
}

#[test]
fn topic_overrides_win_and_unknown_names_are_refused() {
    let broker = BrokerConfig::default();
    let settings = TopicSettings::resolve(
        &broker,
        &props(&[("max.message.bytes", "2048"), ("retention.ms", "1000")]),
    )
    .expect("valid");
    assert_eq!(settings.max_message_bytes, 2048);
    let error = TopicSettings::resolve(&broker, &props(&[("nope", "1")])).expect_err("unknown");
    assert_eq!(error.key, "nope");
    assert!(TopicSettings::resolve(&broker, &props(&[("segment.bytes", "x")])).is_err());
}
