//! A KRaft node's roles and listeners, with Kafka's names, so that a Kafka KRaft
//! `server.properties` (Kafka's own `config/kraft/server.properties` among them) starts a
//! Runnel node as it is: `process.roles`, `node.id`, `controller.quorum.voters`, `listeners`
//! with a controller listener, `controller.listener.names`, `advertised.listeners`,
//! `inter.broker.listener.name`.
//!
//! The listener clients connect to is the first of `listeners` not named in
//! `controller.listener.names`; `advertised.listeners` and `listener.security.protocol.map`
//! are read for that listener's name. When `process.roles` is set, Kafka's start-up checks
//! of these keys apply (`KafkaConfig.validateValues`, the KRaft part): every controller
//! listener name must be among `listeners`, and `advertised.listeners` must not name one.
//!
//! A combined node (`broker,controller`) runs one of two ways. With no
//! `controller.quorum.voters`, or voters naming only itself, it is a quorum of one, and its
//! controller listener is not bound (a quorum of one has no peer to serve). With several
//! voters, this node among them, it is one voter of a metadata quorum of several
//! ([`quorum`]): its controller listener is bound where `listeners` puts the entry named in
//! `controller.listener.names`, or else at this node's own voter address.
//!
//! A controller-only node (`controller`) is one of the voters and serves no clients: its
//! `listeners` hold controller listeners only, as Kafka requires. A broker-only node
//! (`broker`) is not among the voters: it follows the metadata log as a non-voting learner
//! (`runnel-controller`'s `learner.rs`), which the leader reaches on a listener of the
//! learner's own, bound on the client listener's address with a port the OS picks; its
//! `listeners` must not hold a controller listener, as in Kafka.

use std::collections::BTreeMap;

use runnel_controller::Voter;

use super::ConfigError;

/// One entry of `listeners` or `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name (`PLAINTEXT` when the entry has none), upper case as Kafka reads it.
    pub name: String,
    /// `host:port`, the host possibly empty (every interface).
    pub address: String,
}

/// Parses a comma-separated listener list; a bare `host:port` is `PLAINTEXT`.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut listeners = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = entry.split_once("://").unwrap_or(("PLAINTEXT", entry));
        if name.is_empty() || !address.contains(':') {
            return Err(ConfigError::new(
                key,
                value,
                format!("{entry:?} is not NAME://host:port"),
            ));
        }
        let name = name.to_ascii_uppercase();
        if listeners.iter().any(|l: &Listener| l.name == name) {
            return Err(ConfigError::new(
                key,
                value,
                format!("listener name {name} appears twice"),
            ));
        }
        listeners.push(Listener {
            name,
            address: address.to_string(),
        });
    }
    Ok(listeners)
}

fn controller_listener_names(properties: &BTreeMap<String, String>) -> Vec<String> {
    properties
        .get("controller.listener.names")
        .map(|names| {
            names
                .split(',')
                .map(|n| n.trim().to_ascii_uppercase())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The entries of `listeners`: those not named in `controller.listener.names` (the clients'),
/// then those named there (the controller's).
fn listeners_by_role(
    properties: &BTreeMap<String, String>,
) -> Result<(Vec<Listener>, Vec<Listener>), ConfigError> {
    let Some(value) = properties.get("listeners") else {
        return Ok((Vec::new(), Vec::new()));
    };
    let controllers = controller_listener_names(properties);
    let listeners = parse_listeners("listeners", value)?;
    Ok(listeners
        .into_iter()
        .partition(|l| !controllers.contains(&l.name)))
}

/// The listener clients connect to (see the module doc); `None` without `listeners`.
pub fn client_listener(
    properties: &BTreeMap<String, String>,
) -> Result<Option<Listener>, ConfigError> {
    let Some(value) = properties.get("listeners") else {
        return Ok(None);
    };
    match listeners_by_role(properties)?.0.into_iter().next() {
        Some(listener) => Ok(Some(listener)),
        None => Err(ConfigError::new(
            "listeners",
            value,
            "it has no listener for clients: every one is named in controller.listener.names",
        )),
    }
}

/// The entries of `listeners` named in `controller.listener.names`.
pub fn controller_listeners(
    properties: &BTreeMap<String, String>,
) -> Result<Vec<Listener>, ConfigError> {
    Ok(listeners_by_role(properties)?.1)
}

/// The entry of `advertised.listeners` for the client listener `name`: the one of that name,
/// or the only entry when it has none; `None` without `advertised.listeners`.
pub fn advertised_for(
    properties: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<Listener>, ConfigError> {
    let Some(value) = properties.get("advertised.listeners") else {
        return Ok(None);
    };
    let advertised = parse_listeners("advertised.listeners", value)?;
    if let Some(listener) = advertised.iter().find(|l| l.name == name) {
        return Ok(Some(listener.clone()));
    }
    match advertised.as_slice() {
        [only] if !value.contains("://") => Ok(Some(only.clone())),
        _ => Err(ConfigError::new(
            "advertised.listeners",
            value,
            format!("it has no entry for the client listener {name}"),
        )),
    }
}

/// Kafka's KRaft start-up checks, and the nodes that run today (see the module doc).
/// What `process.roles` makes a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessRole {
    /// `broker,controller` (and a node without `process.roles`): a voter that serves clients.
    #[default]
    Combined,
    /// `broker`: serves clients, follows the metadata log as a learner.
    Broker,
    /// `controller`: a voter that serves no clients.
    Controller,
}

/// `process.roles` and Kafka's start-up checks of the keys it governs; the node's role.
pub fn check_roles(
    properties: &BTreeMap<String, String>,
    node_id: i32,
) -> Result<ProcessRole, ConfigError> {
    let role = match properties.get("process.roles") {
        Some(roles) => parse_roles(roles)?,
        None => ProcessRole::Combined,
    };
    if let Some(voters) = properties.get("controller.quorum.voters") {
        check_voters(voters, node_id, role)?;
    } else if role != ProcessRole::Combined {
        return Err(ConfigError::new(
            "controller.quorum.voters",
            "",
            "a broker-only or controller-only node needs the voters of its metadata quorum",
        ));
    }
    if !properties.contains_key("process.roles") {
        return Ok(role);
    }
    let names = controller_listener_names(properties);
    check_role_listeners(properties, role, &names)?;
    let listeners = match properties.get("listeners") {
        Some(value) => parse_listeners("listeners", value)?,
        None => Vec::new(),
    };
    if let Some(missing) = names
        .iter()
        .find(|n| !listeners.iter().any(|l| &l.name == *n))
    {
        // A broker-only node names the controllers' listener without listening on it.
        if !listeners.is_empty() && role != ProcessRole::Broker {
            return Err(ConfigError::new(
                "controller.listener.names",
                properties
                    .get("controller.listener.names")
                    .map_or("", String::as_str),
                format!("the controller listener {missing} is not among listeners"),
            ));
        }
    }
    if let Some(value) = properties
        .get("advertised.listeners")
        .filter(|_| role != ProcessRole::Controller)
    {
        let advertised = parse_listeners("advertised.listeners", value)?;
        if let Some(controller) = advertised.iter().find(|l| names.contains(&l.name)) {
            return Err(ConfigError::new(
                "advertised.listeners",
                value,
                format!(
                    "it must not contain the controller listener {} when process.roles \
                     contains broker",
                    controller.name
                ),
            ));
        }
    }
    Ok(role)
}

fn parse_roles(roles: &str) -> Result<ProcessRole, ConfigError> {
    let mut broker = false;
    let mut controller = false;
    for role in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match role {
            "broker" => broker = true,
            "controller" => controller = true,
            other => {
                return Err(ConfigError::new(
                    "process.roles",
                    roles,
                    format!("unknown role {other:?} (roles are broker and controller)"),
                ))
            }
        }
    }
    match (broker, controller) {
        (true, true) => Ok(ProcessRole::Combined),
        (true, false) => Ok(ProcessRole::Broker),
        (false, true) => Ok(ProcessRole::Controller),
        (false, false) => Err(ConfigError::new(
            "process.roles",
            roles,
            "it names no role (roles are broker and controller)",
        )),
    }
}

/// Kafka's checks of `listeners` for a single-role node (`KafkaConfig.validateValues`): a
/// broker-only node needs `controller.listener.names` (to know how the controllers are
/// reached) and must not listen on one; a controller-only node listens on controller
/// listeners only.
fn check_role_listeners(
    properties: &BTreeMap<String, String>,
    role: ProcessRole,
    names: &[String],
) -> Result<(), ConfigError> {
    let value = properties.get("listeners").map_or("", String::as_str);
    let (clients, controllers) = listeners_by_role(properties)?;
    match role {
        ProcessRole::Combined => Ok(()),
        ProcessRole::Broker if names.is_empty() => Err(ConfigError::new(
            "controller.listener.names",
            "",
            "it must name the controllers' listener when process.roles=broker",
        )),
        ProcessRole::Broker => match controllers.first() {
            Some(controller) => Err(ConfigError::new(
                "listeners",
                value,
                format!(
                    "it must not contain the controller listener {} when process.roles=broker",
                    controller.name
                ),
            )),
            None => Ok(()),
        },
        ProcessRole::Controller => match clients.first() {
            Some(client) => Err(ConfigError::new(
                "listeners",
                value,
                format!(
                    "it must contain only controller listeners (from controller.listener.names) \
                     when process.roles=controller, not {}",
                    client.name
                ),
            )),
            None => Ok(()),
        },
    }
}

/// This node's part in a metadata quorum of several voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// `controller.quorum.voters`, in the order given.
    pub voters: Vec<Voter>,
    /// Where this node's controller listener is bound.
    pub listen: std::net::SocketAddr,
}

/// The quorum of several voters `controller.quorum.voters` names (see the module doc);
/// `None` for a quorum of one.
pub fn quorum(
    properties: &BTreeMap<String, String>,
    node_id: i32,
) -> Result<Option<Quorum>, ConfigError> {
    let key = "controller.quorum.voters";
    let Some(value) = properties.get(key) else {
        return Ok(None);
    };
    let role = match properties.get("process.roles") {
        Some(roles) => parse_roles(roles)?,
        None => ProcessRole::Combined,
    };
    let voters = check_voters(value, node_id, role)?;
    if role == ProcessRole::Broker {
        // The learner's own listener, for the leader's RPCs: the client listener's address,
        // any port.
        let client = client_listener(properties)?
            .map(|l| l.address)
            .unwrap_or_default();
        let (mut listen, _) = super::listen_address(&client)
            .map_err(|reason| ConfigError::new("listeners", &client, reason))?;
        listen.set_port(0);
        return Ok(Some(Quorum { voters, listen }));
    }
    if voters.len() < 2 && role == ProcessRole::Combined {
        return Ok(None);
    }
    let own = voters
        .iter()
        .find(|voter| voter.id == node_id)
        .map(|voter| voter.address.clone())
        .unwrap_or_default();
    let (address, from_key, from_value) = match controller_listeners(properties)?.first() {
        Some(listener) => (
            listener.address.clone(),
            "listeners",
            properties.get("listeners").cloned().unwrap_or_default(),
        ),
        None => (own, key, value.clone()),
    };
    let (listen, _) = super::listen_address(&address)
        .map_err(|reason| ConfigError::new(from_key, &from_value, reason))?;
    Ok(Some(Quorum { voters, listen }))
}

/// `controller.quorum.voters`: `id@host:port,…` as the quorum parses it, naming each node
/// once and this node among them.
fn check_voters(voters: &str, node_id: i32, role: ProcessRole) -> Result<Vec<Voter>, ConfigError> {
    let key = "controller.quorum.voters";
    let parsed = Voter::parse_list(voters).map_err(|error| {
        ConfigError::new(
            key,
            voters,
            format!("{:?} is not id@host:port: {}", error.entry, error.reason),
        )
    })?;
    if let Some(twice) = parsed
        .iter()
        .enumerate()
        .find(|(at, voter)| parsed[..*at].iter().any(|earlier| earlier.id == voter.id))
        .map(|(_, voter)| voter.id)
    {
        return Err(ConfigError::new(
            key,
            voters,
            format!("node {twice} appears twice"),
        ));
    }
    let among = parsed.iter().any(|voter| voter.id == node_id);
    let ids: Vec<String> = parsed.iter().map(|voter| voter.id.to_string()).collect();
    if role == ProcessRole::Broker && among {
        return Err(ConfigError::new(
            key,
            voters,
            format!(
                "this is node.id {node_id}, which is among the voters: a broker-only node \
                 (process.roles=broker) is not a voter; use broker,controller"
            ),
        ));
    }
    if role != ProcessRole::Broker && !among {
        return Err(ConfigError::new(
            key,
            voters,
            format!(
                "this is node.id {node_id}, which is not among the voters ({}): a node with \
                 the controller role is one of them (a broker-only node has \
                 process.roles=broker)",
                ids.join(", ")
            ),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Kafka 3.7's `config/kraft/server.properties`, its listener and role keys.
    fn kafka_kraft_defaults() -> BTreeMap<String, String> {
        props(&[
            ("process.roles", "broker,controller"),
            ("node.id", "1"),
            ("controller.quorum.voters", "1@localhost:9093"),
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("inter.broker.listener.name", "PLAINTEXT"),
            ("advertised.listeners", "PLAINTEXT://localhost:9092"),
            ("controller.listener.names", "CONTROLLER"),
        ])
    }

    #[test]
    fn kafkas_own_kraft_file_is_a_combined_quorum_of_one() {
        let properties = kafka_kraft_defaults();
        check_roles(&properties, 1).expect("Kafka's file is accepted");
        let client = client_listener(&properties)
            .expect("listeners")
            .expect("one");
        assert_eq!(client.name, "PLAINTEXT");
        assert_eq!(client.address, ":9092");
        let advertised = advertised_for(&properties, &client.name).expect("advertised");
        assert_eq!(advertised.map(|l| l.address), Some("localhost:9092".into()));
    }

    #[test]
    fn the_client_listener_is_the_first_that_is_not_a_controllers() {
        let mut properties = kafka_kraft_defaults();
        properties.insert(
            "listeners".into(),
            "CONTROLLER://127.0.0.1:9093,INTERNAL://127.0.0.1:9092".into(),
        );
        properties.insert("advertised.listeners".into(), "INTERNAL://h:1".into());
        let client = client_listener(&properties)
            .expect("listeners")
            .expect("one");
        assert_eq!(
            (client.name.as_str(), client.address.as_str()),
            ("INTERNAL", "127.0.0.1:9092")
        );
        properties.insert("listeners".into(), "CONTROLLER://:9093".into());
        assert!(client_listener(&properties).is_err(), "no client listener");
    }

    #[test]
    fn what_is_not_a_quorum_of_one_is_refused_with_the_reason() {
        for (key, value, reason) in [
            ("process.roles", "broker,zookeeper", "unknown role"),
            (
                "controller.quorum.voters",
                "2@a:9093,3@b:9093,4@c:9093",
                "not among the voters (2, 3, 4)",
            ),
            (
                "controller.quorum.voters",
                "1@a:9093,2@b:9093,1@c:9093",
                "node 1 appears twice",
            ),
            (
                "controller.quorum.voters",
                "2@localhost:9093",
                "this is node.id 1",
            ),
            (
                "controller.quorum.voters",
                "1@localhost",
                "is not id@host:port",
            ),
            ("controller.listener.names", "CTRL", "not among listeners"),
            (
                "advertised.listeners",
                "PLAINTEXT://h:9092,CONTROLLER://h:9093",
                "must not contain the controller listener",
            ),
        ] {
            let mut properties = kafka_kraft_defaults();
            properties.insert(key.into(), value.into());
            let error = check_roles(&properties, 1).expect_err(value);
            assert_eq!(error.key, key);
            assert!(error.reason.contains(reason), "{value}: {error}");
        }
    }

    #[test]
    fn single_roles_follow_kafkas_listener_rules() {
        // A broker-only node: not a voter, no controller listener of its own; its learner
        // listener is on the client listener's address, any port.
        let mut broker = kafka_kraft_defaults();
        broker.insert("process.roles".into(), "broker".into());
        broker.insert("controller.quorum.voters".into(), "1@127.0.0.1:9093".into());
        broker.insert("listeners".into(), "PLAINTEXT://127.0.0.1:9094".into());
        assert_eq!(
            check_roles(&broker, 2).expect("broker"),
            ProcessRole::Broker
        );
        let learner = quorum(&broker, 2).expect("valid").expect("a learner");
        assert_eq!(learner.listen.to_string(), "127.0.0.1:0");
        assert_eq!(learner.voters.len(), 1);
        let refused = check_roles(&broker, 1).expect_err("a voter cannot be broker-only");
        assert!(refused.reason.contains("is among the voters"), "{refused}");
        let mut listening = broker.clone();
        listening.insert(
            "listeners".into(),
            "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095".into(),
        );
        let refused = check_roles(&listening, 2).expect_err("a controller listener");
        assert_eq!(refused.key, "listeners");
        assert!(refused
            .reason
            .contains("must not contain the controller listener"));
        let mut unnamed = broker.clone();
        unnamed.remove("controller.listener.names");
        let refused = check_roles(&unnamed, 2).expect_err("no controller.listener.names");
        assert_eq!(refused.key, "controller.listener.names");

        // A controller-only node: a voter listening on controller listeners only, bound even
        // as the only voter (brokers join through it).
        let mut controller = kafka_kraft_defaults();
        controller.insert("process.roles".into(), "controller".into());
        controller.insert("listeners".into(), "CONTROLLER://127.0.0.1:9093".into());
        assert_eq!(
            check_roles(&controller, 1).expect("controller"),
            ProcessRole::Controller
        );
        let voter = quorum(&controller, 1).expect("valid").expect("bound");
        assert_eq!(voter.listen.to_string(), "127.0.0.1:9093");
        controller.insert(
            "listeners".into(),
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093".into(),
        );
        let refused = check_roles(&controller, 1).expect_err("a client listener");
        assert!(
            refused.reason.contains("only controller listeners"),
            "{refused}"
        );
        let refused = check_roles(&controller, 2).expect_err("not a voter");
        assert!(refused.reason.contains("not among the voters"), "{refused}");
    }

    #[test]
    fn several_voters_bind_the_controller_listener_or_else_their_own_voter_address() {
        let mut properties = kafka_kraft_defaults();
        assert_eq!(quorum(&properties, 1).expect("one voter"), None);
        properties.insert(
            "controller.quorum.voters".into(),
            "1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093".into(),
        );
        properties.insert(
            "listeners".into(),
            "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19193".into(),
        );
        check_roles(&properties, 1).expect("a voter of three");
        let three = quorum(&properties, 1).expect("valid").expect("several");
        assert_eq!(three.voters.len(), 3);
        assert_eq!(three.listen.to_string(), "127.0.0.1:19193");
        properties.insert("listeners".into(), "PLAINTEXT://127.0.0.1:19092".into());
        properties.remove("controller.listener.names");
        let own = quorum(&properties, 2).expect("valid").expect("several");
        assert_eq!(own.listen.to_string(), "127.0.0.1:29093");
    }

    #[test]
    fn listeners_parse_as_kafka_writes_them() {
        let parsed = parse_listeners("listeners", "plaintext://:9092, EXTERNAL://127.0.0.1:9094")
            .expect("ok");
        assert_eq!(parsed[0].name, "PLAINTEXT");
        assert_eq!(parsed[1].address, "127.0.0.1:9094");
        let bare = parse_listeners("listeners", "127.0.0.1:9092").expect("a bare address");
        assert_eq!(bare[0].name, "PLAINTEXT");
        assert!(parse_listeners("listeners", "PLAINTEXT://:1,PLAINTEXT://:2").is_err());
        assert!(parse_listeners("listeners", "PLAINTEXT://nohost").is_err());
    }
}
