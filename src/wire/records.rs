//! Zone data: agents, endpoints, servers, delegations, zone headers, records with their
//! provenance, and the changes between serials.

use std::sync::Arc;

use super::{PeerDataError, pb};
use crate::name::Name;
use crate::record::{
    self, Agent, Alias, Delegation, Endpoint, EndpointHealth, HealthSettings, HealthState, JsonDoc,
    LiveAgent, LiveRecord, RecordChange, RecordKind, ServerAddress, ZoneChange, ZoneHeader, limits,
};

pub(super) fn peer_name(field: &'static str, text: &str) -> Result<Name, PeerDataError> {
    Name::parse(text).map_err(|source| PeerDataError::Name { field, source })
}

fn peer_json(field: &'static str, text: &str) -> Result<serde_json::Value, PeerDataError> {
    serde_json::from_str(text).map_err(|error| PeerDataError::Json {
        field,
        reason: error.to_string(),
    })
}

impl From<&Agent> for pb::Agent {
    fn from(agent: &Agent) -> pb::Agent {
        pb::Agent {
            name: agent.name.to_string(),
            description: agent.description.clone(),
            tags: agent.tags.iter().map(|t| t.to_string()).collect(),
            capabilities: agent.capabilities.iter().map(|c| c.to_string()).collect(),
            version: agent.version.to_string(),
            ttl: agent.ttl.unwrap_or(0),
            timeout_ms: agent.timeout_ms,
            max_retries: agent.max_retries,
            endpoints: agent.endpoints.iter().map(pb::Endpoint::from).collect(),
            input_schema_json: agent.input_schema.text().to_string(),
            output_schema_json: agent
                .output_schema
                .as_ref()
                .map_or_else(String::new, |doc| doc.text().to_string()),
            metadata_json: agent
                .metadata
                .as_ref()
                .map_or_else(String::new, |doc| doc.text().to_string()),
            health_checks_off: !agent.health_checks,
        }
    }
}

impl From<&Endpoint> for pb::Endpoint {
    fn from(endpoint: &Endpoint) -> pb::Endpoint {
        let health = &endpoint.health;
        pb::Endpoint {
            url: endpoint.url.clone(),
            tool: endpoint.tool.clone(),
            priority: u32::from(endpoint.priority),
            weight: u32::from(endpoint.weight),
            // Unknown and never probed is the message's absence: records of zones that do
            // not probe stay as small as before.
            health: (*health != EndpointHealth::default()).then(|| pb::EndpointHealth {
                state: pb::HealthState::from(health.state).into(),
                since_unix: health.since_unix,
                error: health.error.clone(),
            }),
        }
    }
}

impl From<HealthState> for pb::HealthState {
    fn from(state: HealthState) -> pb::HealthState {
        match state {
            HealthState::Unknown => pb::HealthState::HealthUnknown,
            HealthState::Up => pb::HealthState::HealthUp,
            HealthState::Down => pb::HealthState::HealthDown,
        }
    }
}

/// An endpoint from a peer, with the health its primary concluded.
fn peer_endpoint(endpoint: pb::Endpoint) -> Result<Endpoint, PeerDataError> {
    let mut checked = Endpoint::new(
        &endpoint.url,
        &endpoint.tool,
        i64::from(endpoint.priority),
        i64::from(endpoint.weight),
    )?;
    if let Some(health) = endpoint.health {
        let state = match pb::HealthState::try_from(health.state) {
            Ok(pb::HealthState::HealthUnknown) => HealthState::Unknown,
            Ok(pb::HealthState::HealthUp) => HealthState::Up,
            Ok(pb::HealthState::HealthDown) => HealthState::Down,
            Err(_) => return Err(PeerDataError::UnknownHealth(health.state)),
        };
        checked.health = EndpointHealth::new(state, health.since_unix, &health.error);
    }
    Ok(checked)
}

impl From<&HealthSettings> for pb::HealthSettings {
    fn from(settings: &HealthSettings) -> pb::HealthSettings {
        let millis = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        pb::HealthSettings {
            interval_ms: millis(settings.interval),
            timeout_ms: millis(settings.timeout),
            down_after: settings.down_after,
            up_after: settings.up_after,
        }
    }
}

impl TryFrom<pb::HealthSettings> for HealthSettings {
    type Error = PeerDataError;
    fn try_from(settings: pb::HealthSettings) -> Result<HealthSettings, PeerDataError> {
        let interval = std::time::Duration::from_millis(u64::from(settings.interval_ms));
        let timeout = std::time::Duration::from_millis(u64::from(settings.timeout_ms));
        let thresholds = 1..=HealthSettings::THRESHOLD_MAX;
        if !(HealthSettings::INTERVAL_MIN..=HealthSettings::INTERVAL_MAX).contains(&interval)
            || timeout.is_zero()
            || timeout > interval
            || !thresholds.contains(&settings.down_after)
            || !thresholds.contains(&settings.up_after)
        {
            return Err(PeerDataError::HealthSettings(format!("{settings:?}")));
        }
        Ok(HealthSettings {
            interval,
            timeout,
            down_after: settings.down_after,
            up_after: settings.up_after,
        })
    }
}

impl From<&ServerAddress> for pb::ServerAddress {
    fn from(server: &ServerAddress) -> pb::ServerAddress {
        pb::ServerAddress {
            grpc: server.grpc.clone(),
            dns: server.dns.map_or_else(String::new, |addr| addr.to_string()),
        }
    }
}

/// A delegation as a referral, with the TTL it is answered with.
pub fn referral(delegation: &Delegation, ttl: u32) -> pb::Referral {
    pb::Referral {
        zone: delegation.zone.to_string(),
        servers: delegation
            .servers
            .iter()
            .map(pb::ServerAddress::from)
            .collect(),
        ttl,
    }
}

impl From<&Alias> for pb::Alias {
    fn from(alias: &Alias) -> pb::Alias {
        pb::Alias {
            name: alias.name.to_string(),
            target: alias.target.to_string(),
            ttl: alias.ttl.unwrap_or(0),
        }
    }
}

impl TryFrom<pb::Agent> for Agent {
    type Error = PeerDataError;

    fn try_from(agent: pb::Agent) -> Result<Agent, PeerDataError> {
        let pb::Agent {
            name,
            description,
            tags,
            capabilities,
            version,
            ttl,
            timeout_ms,
            max_retries,
            endpoints,
            input_schema_json,
            output_schema_json,
            metadata_json,
            health_checks_off,
        } = agent;
        let name = Name::parse_agent(&name).map_err(|source| PeerDataError::Name {
            field: "agent name",
            source,
        })?;
        record::check_description(&description)?;
        record::check_labels("tags", &tags)?;
        record::check_labels("capabilities", &capabilities)?;
        record::check_version(&version)?;
        record::check_range(
            "timeout_ms",
            i64::from(timeout_ms),
            1,
            i64::from(limits::TIMEOUT_MS_MAX),
        )?;
        record::check_range(
            "max_retries",
            i64::from(max_retries),
            0,
            i64::from(limits::MAX_RETRIES_MAX),
        )?;
        let endpoints = endpoints
            .into_iter()
            .map(peer_endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        record::check_endpoints(&endpoints)?;
        // The default schema is by far the most common: share it instead of recompiling.
        let default_schema = record::default_input_schema();
        let input_schema =
            if input_schema_json.is_empty() || input_schema_json == default_schema.text() {
                default_schema
            } else {
                record::check_schema(
                    "input_schema",
                    peer_json("input_schema", &input_schema_json)?,
                )?
            };
        let output_schema: Option<JsonDoc> = if output_schema_json.is_empty() {
            None
        } else {
            Some(record::check_schema(
                "output_schema",
                peer_json("output_schema", &output_schema_json)?,
            )?)
        };
        let metadata = if metadata_json.is_empty() {
            None
        } else {
            Some(record::check_metadata(peer_json(
                "metadata",
                &metadata_json,
            )?)?)
        };
        Ok(Agent {
            name,
            description,
            tags: record::intern::intern_all(&tags),
            capabilities: record::intern::intern_all(&capabilities),
            version: record::intern::intern(&version),
            ttl: (ttl > 0).then_some(ttl),
            timeout_ms,
            max_retries,
            endpoints,
            input_schema,
            output_schema,
            metadata,
            health_checks: !health_checks_off,
        })
    }
}

impl TryFrom<pb::ServerAddress> for ServerAddress {
    type Error = PeerDataError;
    fn try_from(server: pb::ServerAddress) -> Result<ServerAddress, PeerDataError> {
        let dns = (!server.dns.is_empty()).then_some(server.dns.as_str());
        Ok(ServerAddress::new(&server.grpc, dns)?)
    }
}

/// A referral's delegation; its TTL is the one the referral was answered with.
impl TryFrom<pb::Referral> for Delegation {
    type Error = PeerDataError;
    fn try_from(referral: pb::Referral) -> Result<Delegation, PeerDataError> {
        let servers = referral
            .servers
            .into_iter()
            .map(ServerAddress::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        record::check_servers(&servers)?;
        Ok(Delegation {
            zone: peer_name("referral zone", &referral.zone)?,
            servers,
            ttl: Some(referral.ttl),
        })
    }
}

impl From<&ZoneHeader> for pb::ZoneHeader {
    fn from(header: &ZoneHeader) -> pb::ZoneHeader {
        pb::ZoneHeader {
            origin: header.origin.to_string(),
            serial: header.serial,
            ttl: header.ttl,
            negative_ttl: header.negative_ttl,
            refresh: header.refresh,
            retry: header.retry,
            expire: header.expire,
            contact: header.contact.clone(),
            servers: header.servers.iter().map(pb::ServerAddress::from).collect(),
            health: (header.health != HealthSettings::DEFAULT)
                .then(|| pb::HealthSettings::from(&header.health)),
        }
    }
}

impl TryFrom<pb::ZoneHeader> for ZoneHeader {
    type Error = PeerDataError;
    fn try_from(header: pb::ZoneHeader) -> Result<ZoneHeader, PeerDataError> {
        let servers = header
            .servers
            .into_iter()
            .map(ServerAddress::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        record::check_servers(&servers)?;
        record::check_contact(&header.contact)?;
        Ok(ZoneHeader {
            origin: peer_name("zone origin", &header.origin)?,
            serial: header.serial,
            ttl: header.ttl,
            negative_ttl: header.negative_ttl,
            refresh: header.refresh,
            retry: header.retry,
            expire: header.expire,
            contact: header.contact,
            servers,
            health: header
                .health
                .map(HealthSettings::try_from)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

impl From<RecordKind> for pb::RecordKind {
    fn from(kind: RecordKind) -> pb::RecordKind {
        match kind {
            RecordKind::Agent => pb::RecordKind::Agent,
            RecordKind::Alias => pb::RecordKind::Alias,
            RecordKind::Delegation => pb::RecordKind::Delegation,
        }
    }
}

fn record_kind(value: i32) -> Result<RecordKind, PeerDataError> {
    match pb::RecordKind::try_from(value) {
        Ok(pb::RecordKind::Agent) => Ok(RecordKind::Agent),
        Ok(pb::RecordKind::Alias) => Ok(RecordKind::Alias),
        Ok(pb::RecordKind::Delegation) => Ok(RecordKind::Delegation),
        Ok(pb::RecordKind::Unspecified) | Err(_) => Err(PeerDataError::UnknownKind(value)),
    }
}

impl From<&LiveRecord> for pb::ZoneRecord {
    fn from(record: &LiveRecord) -> pb::ZoneRecord {
        match record {
            LiveRecord::Agent(live) => pb::ZoneRecord {
                record: Some(pb::zone_record::Record::Agent(pb::Agent::from(
                    &*live.agent,
                ))),
                from_file: live.from_file,
                live_endpoints: live.live.iter().cloned().collect(),
            },
            LiveRecord::Alias(alias) => pb::ZoneRecord {
                record: Some(pb::zone_record::Record::Alias(pb::Alias::from(&**alias))),
                ..pb::ZoneRecord::default()
            },
            LiveRecord::Delegation(delegation) => pb::ZoneRecord {
                record: Some(pb::zone_record::Record::Delegation(referral(
                    delegation,
                    delegation.ttl.unwrap_or(0),
                ))),
                ..pb::ZoneRecord::default()
            },
        }
    }
}

impl TryFrom<pb::ZoneRecord> for LiveRecord {
    type Error = PeerDataError;
    fn try_from(record: pb::ZoneRecord) -> Result<LiveRecord, PeerDataError> {
        match record.record {
            Some(pb::zone_record::Record::Agent(agent)) => {
                let agent = Agent::try_from(agent)?;
                Ok(LiveRecord::Agent(LiveAgent {
                    agent: Arc::new(agent),
                    from_file: record.from_file,
                    live: record.live_endpoints.into_iter().collect(),
                }))
            }
            Some(pb::zone_record::Record::Alias(alias)) => Ok(LiveRecord::Alias(Arc::new(Alias {
                name: Name::parse_agent(&alias.name).map_err(|source| PeerDataError::Name {
                    field: "alias name",
                    source,
                })?,
                target: peer_name("alias target", &alias.target)?,
                ttl: (alias.ttl > 0).then_some(alias.ttl),
            }))),
            Some(pb::zone_record::Record::Delegation(referral)) => {
                let ttl = referral.ttl;
                let mut delegation = Delegation::try_from(referral)?;
                delegation.ttl = (ttl > 0).then_some(ttl);
                Ok(LiveRecord::Delegation(Arc::new(delegation)))
            }
            None => Err(PeerDataError::Missing { field: "record" }),
        }
    }
}

impl From<&RecordChange> for pb::RecordChange {
    fn from(change: &RecordChange) -> pb::RecordChange {
        let change = match change {
            RecordChange::Put(record) => {
                pb::record_change::Change::Put(pb::ZoneRecord::from(record))
            }
            RecordChange::Delete { kind, name } => {
                pb::record_change::Change::Delete(pb::RecordKey {
                    kind: pb::RecordKind::from(*kind) as i32,
                    name: name.to_string(),
                })
            }
        };
        pb::RecordChange {
            change: Some(change),
        }
    }
}

impl TryFrom<pb::RecordChange> for RecordChange {
    type Error = PeerDataError;
    fn try_from(change: pb::RecordChange) -> Result<RecordChange, PeerDataError> {
        match change.change {
            Some(pb::record_change::Change::Put(record)) => {
                Ok(RecordChange::Put(LiveRecord::try_from(record)?))
            }
            Some(pb::record_change::Change::Delete(key)) => Ok(RecordChange::Delete {
                kind: record_kind(key.kind)?,
                name: peer_name("deleted record name", &key.name)?,
            }),
            None => Err(PeerDataError::Missing { field: "change" }),
        }
    }
}

impl From<&ZoneChange> for pb::ZoneChange {
    fn from(change: &ZoneChange) -> pb::ZoneChange {
        pb::ZoneChange {
            from_serial: change.from_serial,
            serial: change.serial,
            changes: change.changes.iter().map(pb::RecordChange::from).collect(),
            header: Some(pb::ZoneHeader::from(&change.header)),
        }
    }
}

impl TryFrom<pb::ZoneChange> for ZoneChange {
    type Error = PeerDataError;
    /// Decodes one change-log entry (from the store, a transfer or a Watch stream): the one
    /// decoder of the change log.
    fn try_from(change: pb::ZoneChange) -> Result<ZoneChange, PeerDataError> {
        let header = change.header.ok_or(PeerDataError::Missing {
            field: "the header of a zone change",
        })?;
        let mut header = ZoneHeader::try_from(header)?;
        header.serial = change.serial;
        Ok(ZoneChange {
            from_serial: change.from_serial,
            serial: change.serial,
            changes: change
                .changes
                .into_iter()
                .map(RecordChange::try_from)
                .collect::<Result<_, _>>()?,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ZoneHeader {
        ZoneHeader {
            origin: Name::parse("finance.acme").unwrap(),
            serial: 7,
            ttl: 300,
            negative_ttl: 60,
            refresh: 60,
            retry: 10,
            expire: 86_400,
            contact: "ops@acme.example".into(),
            servers: vec![
                ServerAddress::new("http://127.0.0.1:7102", Some("127.0.0.1:5302")).unwrap(),
            ],
            health: crate::record::HealthSettings::DEFAULT,
        }
    }

    fn agent(name: &str) -> Agent {
        Agent {
            name: Name::parse(name).unwrap(),
            description: "Financial analyst".into(),
            tags: record::intern::intern_all(&["finance"]),
            capabilities: record::intern::intern_all(&["forecast"]),
            version: "1.0".into(),
            ttl: Some(120),
            timeout_ms: 30_000,
            max_retries: 2,
            endpoints: vec![Endpoint::new("http://127.0.0.1:9101/mcp", "analyst", 10, 3).unwrap()],
            input_schema: record::default_input_schema(),
            output_schema: None,
            metadata: None,
            health_checks: true,
        }
    }

    #[test]
    fn a_change_round_trips_through_its_message() {
        let change = ZoneChange {
            from_serial: 6,
            serial: 7,
            changes: vec![
                RecordChange::Put(LiveRecord::Agent(LiveAgent {
                    agent: Arc::new(agent("analyst.finance.acme")),
                    from_file: false,
                    live: ["http://127.0.0.1:9101/mcp".to_string()].into(),
                })),
                RecordChange::Put(LiveRecord::Alias(Arc::new(Alias {
                    name: Name::parse("forecaster.finance.acme").unwrap(),
                    target: Name::parse("analyst.finance.acme").unwrap(),
                    ttl: None,
                }))),
                RecordChange::Put(LiveRecord::Delegation(Arc::new(Delegation {
                    zone: Name::parse("eu.finance.acme").unwrap(),
                    servers: header().servers,
                    ttl: Some(3600),
                }))),
                RecordChange::Delete {
                    kind: RecordKind::Agent,
                    name: Name::parse("old.finance.acme").unwrap(),
                },
            ],
            header: header(),
        };
        let message = pb::ZoneChange::from(&change);
        assert_eq!(ZoneChange::try_from(message).unwrap(), change);
    }

    #[test]
    fn damaged_records_are_errors_not_losses() {
        let mut message = pb::ZoneRecord::from(&LiveRecord::Agent(LiveAgent {
            agent: Arc::new(agent("analyst.finance.acme")),
            from_file: true,
            live: Default::default(),
        }));
        if let Some(pb::zone_record::Record::Agent(agent)) = &mut message.record {
            agent.endpoints[0].priority = 0;
        }
        let error = LiveRecord::try_from(message).unwrap_err().to_string();
        assert!(error.contains("priority"), "{error}");
        let empty = pb::ZoneRecord::default();
        assert!(matches!(
            LiveRecord::try_from(empty),
            Err(PeerDataError::Missing { .. })
        ));
        let unknown = pb::RecordChange {
            change: Some(pb::record_change::Change::Delete(pb::RecordKey {
                kind: 0,
                name: "x.acme".into(),
            })),
        };
        assert!(matches!(
            RecordChange::try_from(unknown),
            Err(PeerDataError::UnknownKind(0))
        ));
    }
}
