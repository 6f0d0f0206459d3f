//! The brokers (`/brokers`, `/api/brokers`): this node (a single-node cluster has one) with its
//! listener, data directory and configs. The configs are read through the DescribeConfigs
//! handler itself, with a request a client would send (resource type BROKER, this node's id),
//! so the console shows exactly what admin clients see, sources included.

use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use runnel_protocol::api_versions::served_api;
use runnel_protocol::messages::describe_configs_request::DescribeConfigsResource;
use runnel_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader, ResponseHeader,
};
use runnel_protocol::{Decodable, Encodable, StrBytes};
use serde::Serialize;

use super::{escape, ConsoleError};
use crate::api::{self, Reply, Request};
use crate::broker::Broker;

/// Kafka's resource type BROKER.
const RESOURCE_BROKER: i8 = 4;

#[derive(Debug, Serialize)]
pub struct BrokerConfigView {
    pub name: String,
    pub value: Option<String>,
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

#[derive(Debug, Serialize)]
pub struct BrokerView {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub data_dir: String,
    pub is_controller: bool,
    pub configs: Vec<BrokerConfigView>,
}

/// Every broker of the cluster: this node.
pub async fn view(broker: &Arc<Broker>) -> Result<Vec<BrokerView>, ConsoleError> {
    let listener = broker.advertised_listener();
    Ok(vec![BrokerView {
        node_id: broker.config.node_id,
        host: listener.host,
        port: listener.port,
        data_dir: broker.config.data_dir.display().to_string(),
        is_controller: true,
        configs: configs(broker).await?,
    }])
}

/// Kafka's ConfigSource names, by wire value.
pub fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

/// This broker's configs, as DescribeConfigs answers a client.
async fn configs(broker: &Arc<Broker>) -> Result<Vec<BrokerConfigView>, ConsoleError> {
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        ConsoleError::Unavailable(format!("describing the broker's configs: {what}: {error}"))
    };
    let api = ApiKey::DescribeConfigs;
    let version = served_api(api as i16).map_or(1, |served| served.max_version);
    let body = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(broker.config.node_id.to_string()))
            // Null: every config (an empty list asks for none).
            .with_configuration_keys(None)])
        .with_include_documentation(false);
    let mut encoded = BytesMut::new();
    body.encode(&mut encoded, version)
        .map_err(|e| failed("encode", &e))?;
    let request = Request {
        api,
        version,
        header: RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_client_id(Some(StrBytes::from_static_str("runnel-console"))),
        body: encoded.freeze(),
        frame: None,
        peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        figures: None,
    };
    let frame = match api::dispatch(broker, request).map_err(|e| failed("dispatch", &e))? {
        Reply::Ready(frame) => frame,
        Reply::Pending(pending) => pending.await.map_err(|e| failed("answer", &e))?,
        Reply::PendingPieces(_) | Reply::None | Reply::Ordered(_) => {
            return Err(failed("answer", &"not a DescribeConfigs response"))
        }
    };
    let mut frame = frame;
    if frame.remaining() < 4 {
        return Err(failed("decode", &"a short response"));
    }
    frame.advance(4);
    ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| failed("decode the header", &e))?;
    let response =
        DescribeConfigsResponse::decode(&mut frame, version).map_err(|e| failed("decode", &e))?;
    let mut configs = Vec::new();
    for result in response.results {
        if result.error_code != 0 {
            let message = result
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return Err(failed("the broker answered", &message));
        }
        configs.extend(result.configs.into_iter().map(|c| BrokerConfigView {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: source_name(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        }));
    }
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

pub fn html(brokers: &[BrokerView]) -> String {
    let mut out = String::from(
        "<table id=\"brokers\"><tr><th>Node</th><th>Host</th><th>Port</th><th>Data directory</th>\
         <th>Controller</th></tr>\n",
    );
    for b in brokers {
        let _ = writeln!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td>\
             <td>{}</td></tr>",
            b.node_id,
            escape(&b.host),
            b.port,
            escape(&b.data_dir),
            if b.is_controller { "yes" } else { "no" },
        );
    }
    out.push_str("</table>\n");
    for b in brokers {
        let _ = writeln!(
            out,
            "<h2>Configs of broker {}</h2>\n<table id=\"broker-configs\"><tr><th>Name</th>\
             <th>Value</th><th>Source</th><th>Read-only</th></tr>",
            b.node_id
        );
        for c in &b.configs {
            let value = if c.sensitive {
                "<em>(sensitive)</em>".to_string()
            } else {
                c.value
                    .as_deref()
                    .map_or_else(|| "<em>null</em>".to_string(), escape)
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"v\">{value}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.name),
                c.source,
                if c.read_only { "yes" } else { "no" },
            );
        }
        out.push_str("</table>\n");
    }
    out
}
