//! Update requests (Register, Renew, Deregister): decoding into checked domain values, and
//! the canonical byte string each one is signed over.
//!
//! The signature covers the request's fields as sent, never protobuf bytes (which are not
//! canonical: field order and default values may be encoded in several ways). The same
//! function builds the string on the client that signs and on the node that verifies, so
//! the two cannot drift apart.

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::authority::live::{AgentUpdate, DEFAULT_LEASE_SECS, LEASE_MAX_SECS, Registration};
use crate::grpc::convert::{RequestError, request_name};
use crate::grpc::pb;
use crate::keys::{AuthError, PROOF_ENTRIES, Proof, SignedFields, UpdateKey};
use crate::name::Name;
use crate::record::{self, Endpoint, limits};

pub const OP_REGISTER: &str = "register";
pub const OP_RENEW: &str = "renew";
pub const OP_DEREGISTER: &str = "deregister";

/// The signed fields of a Register request.
pub fn register_fields(request: &pb::RegisterRequest) -> SignedFields {
    let mut fields = SignedFields::new(OP_REGISTER);
    fields.put("zone", &request.zone).put("name", &request.name);
    if let Some(endpoint) = &request.endpoint {
        fields
            .put("url", &endpoint.url)
            .put("tool", &endpoint.tool)
            .put_u64("priority", u64::from(endpoint.priority))
            .put_u64("weight", u64::from(endpoint.weight));
    }
    fields.put_u64("lease_seconds", u64::from(request.lease_seconds));
    if let Some(agent) = &request.fields {
        if let Some(v) = &agent.description {
            fields.put("description", v);
        }
        if let Some(v) = &agent.tags {
            fields.put_list("tags", &v.items);
        }
        if let Some(v) = &agent.capabilities {
            fields.put_list("capabilities", &v.items);
        }
        if let Some(v) = &agent.version {
            fields.put("version", v);
        }
        if let Some(v) = agent.ttl {
            fields.put_u64("ttl", u64::from(v));
        }
        if let Some(v) = agent.timeout_ms {
            fields.put_u64("timeout_ms", u64::from(v));
        }
        if let Some(v) = agent.max_retries {
            fields.put_u64("max_retries", u64::from(v));
        }
        if let Some(v) = &agent.input_schema_json {
            fields.put("input_schema", v);
        }
        if let Some(v) = &agent.output_schema_json {
            fields.put("output_schema", v);
        }
        if let Some(v) = &agent.metadata_json {
            fields.put("metadata", v);
        }
    }
    fields
}

pub fn renew_fields(request: &pb::RenewRequest) -> SignedFields {
    let mut fields = SignedFields::new(OP_RENEW);
    fields
        .put("zone", &request.zone)
        .put("name", &request.name)
        .put("url", &request.url)
        .put_u64("lease_seconds", u64::from(request.lease_seconds));
    fields
}

pub fn deregister_fields(request: &pb::DeregisterRequest) -> SignedFields {
    let mut fields = SignedFields::new(OP_DEREGISTER);
    fields
        .put("zone", &request.zone)
        .put("name", &request.name)
        .put("url", &request.url);
    fields
}

fn json(field: &'static str, text: &str) -> Result<serde_json::Value, RequestError> {
    serde_json::from_str(text).map_err(|error| RequestError::Json {
        field,
        reason: error.to_string(),
    })
}

fn lease(seconds: u32) -> Result<u32, RequestError> {
    match seconds {
        0 => Ok(DEFAULT_LEASE_SECS),
        n if n > LEASE_MAX_SECS => Err(RequestError::LeaseTooLong { value: n }),
        n => Ok(n),
    }
}

fn agent_name(text: &str) -> Result<Name, RequestError> {
    Name::parse_agent(text).map_err(|source| RequestError::Name {
        field: "name",
        source,
    })
}

/// A Register request, checked: the zone and the registration.
pub fn registration(request: &pb::RegisterRequest) -> Result<(Name, Registration), RequestError> {
    let zone = request_name("zone", &request.zone)?;
    let name = agent_name(&request.name)?;
    let endpoint = request
        .endpoint
        .as_ref()
        .ok_or(RequestError::Missing { field: "endpoint" })?;
    let tool = if endpoint.tool.is_empty() {
        record::Agent::default_tool(&name).to_string()
    } else {
        endpoint.tool.clone()
    };
    let priority = if endpoint.priority == 0 {
        i64::from(record::DEFAULT_PRIORITY)
    } else {
        i64::from(endpoint.priority)
    };
    let endpoint = Endpoint::new(&endpoint.url, &tool, priority, i64::from(endpoint.weight))?;
    let mut update = AgentUpdate::default();
    if let Some(fields) = &request.fields {
        if let Some(v) = &fields.description {
            record::check_description(v)?;
            update.description = Some(v.clone());
        }
        if let Some(v) = &fields.tags {
            record::check_labels("tags", &v.items)?;
            update.tags = Some(v.items.clone());
        }
        if let Some(v) = &fields.capabilities {
            record::check_labels("capabilities", &v.items)?;
            update.capabilities = Some(v.items.clone());
        }
        if let Some(v) = &fields.version {
            record::check_version(v)?;
            update.version = Some(v.clone());
        }
        if let Some(v) = fields.ttl {
            update.ttl = Some(record::check_ttl("ttl", i64::from(v))?);
        }
        if let Some(v) = fields.timeout_ms {
            record::check_range(
                "timeout_ms",
                i64::from(v),
                1,
                i64::from(limits::TIMEOUT_MS_MAX),
            )?;
            update.timeout_ms = Some(v);
        }
        if let Some(v) = fields.max_retries {
            record::check_range(
                "max_retries",
                i64::from(v),
                0,
                i64::from(limits::MAX_RETRIES_MAX),
            )?;
            update.max_retries = Some(v);
        }
        if let Some(v) = &fields.input_schema_json {
            update.input_schema = Some(record::check_schema(
                "input_schema",
                json("input_schema", v)?,
            )?);
        }
        if let Some(v) = &fields.output_schema_json {
            update.output_schema = Some(record::check_schema(
                "output_schema",
                json("output_schema", v)?,
            )?);
        }
        if let Some(v) = &fields.metadata_json {
            update.metadata = Some(record::check_metadata(json("metadata", v)?)?);
        }
    }
    Ok((
        zone,
        Registration {
            name,
            endpoint,
            lease_secs: lease(request.lease_seconds)?,
            fields: update,
        },
    ))
}

/// A Renew request, checked: zone, agent, URL and the lease asked for (`None`: keep it).
pub fn renewal(
    request: &pb::RenewRequest,
) -> Result<(Name, Name, String, Option<u32>), RequestError> {
    let zone = request_name("zone", &request.zone)?;
    let name = agent_name(&request.name)?;
    record::check_http_url("url", &request.url)?;
    let lease_secs = match request.lease_seconds {
        0 => None,
        n => Some(lease(n)?),
    };
    Ok((zone, name, request.url.clone(), lease_secs))
}

/// A Deregister request, checked: zone, agent, and the endpoint URL if one.
pub fn deregistration(
    request: &pb::DeregisterRequest,
) -> Result<(Name, Name, Option<String>), RequestError> {
    let zone = request_name("zone", &request.zone)?;
    let name = agent_name(&request.name)?;
    let url = if request.url.is_empty() {
        None
    } else {
        record::check_http_url("url", &request.url)?;
        Some(request.url.clone())
    };
    Ok((zone, name, url))
}

/// A request signed with `key` over `fields` (unsigned without a key: the node refuses it,
/// naming what is missing).
pub fn signed<T>(body: T, fields: &SignedFields, key: Option<&UpdateKey>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Some(key) = key {
        write_proof(&key.sign_now(fields), request.metadata_mut());
    }
    request
}

/// Reads an update's proof from its gRPC metadata (`aop-key`, `aop-time`, `aop-nonce`,
/// `aop-signature`): `Ok(None)` when there is none.
pub fn proof_from_metadata(metadata: &MetadataMap) -> Result<Option<Proof>, AuthError> {
    Proof::from_entries(|entry| {
        metadata
            .get_all(entry)
            .iter()
            .map(|value| value.to_str().ok())
            .collect()
    })
}

/// Writes a proof into gRPC metadata, replacing any already there. A field that is not valid
/// metadata text (only possible for a hand-made proof) is left out, and the node reports it
/// as missing.
pub fn write_proof(proof: &Proof, metadata: &mut MetadataMap) {
    for (entry, text) in proof.entries() {
        match MetadataValue::try_from(text.as_str()) {
            Ok(value) => {
                metadata.insert(entry, value);
            }
            Err(_) => {
                metadata.remove(entry);
            }
        }
    }
}

/// The update's proof entries as received, to send on to the zone's primary unchanged.
pub fn proof_entries(metadata: &MetadataMap) -> Vec<(&'static str, String)> {
    PROOF_ENTRIES
        .iter()
        .filter_map(|entry| {
            let value = metadata.get(*entry)?.to_str().ok()?;
            Some((*entry, value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIME_HEADER};

    fn key() -> UpdateKey {
        UpdateKey::new(
            "ci-bot",
            "finance.acme",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .unwrap()
    }

    fn fields() -> SignedFields {
        let mut fields = SignedFields::new(OP_REGISTER);
        fields.put("zone", "finance.acme");
        fields
    }

    #[test]
    fn a_proof_goes_through_metadata_unchanged() {
        let proof = key().sign(&fields(), 1_700_000_000, &Proof::new_nonce());
        let mut metadata = MetadataMap::new();
        write_proof(&proof, &mut metadata);
        assert_eq!(proof_from_metadata(&metadata), Ok(Some(proof)));
        assert_eq!(proof_from_metadata(&MetadataMap::new()), Ok(None));
    }

    #[test]
    fn malformed_metadata_is_refused() {
        let proof = key().sign(&fields(), 1, &Proof::new_nonce());
        let mut metadata = MetadataMap::new();
        write_proof(&proof, &mut metadata);
        metadata.remove(NONCE_HEADER);
        let error = proof_from_metadata(&metadata).unwrap_err();
        assert!(
            error.to_string().contains("aop-nonce is missing"),
            "{error}"
        );

        for (header, value, expect) in [
            (NONCE_HEADER, "short", "8 to 64 characters"),
            (NONCE_HEADER, "has space!", "8 to 64 characters"),
            (TIME_HEADER, "+5", "decimal"),
            (TIME_HEADER, "99999999999999999999999", "decimal"),
            (SIGNATURE_HEADER, "AAAA", "32-byte"),
            (KEY_HEADER, "bad_name", "aop-key"),
        ] {
            let mut metadata = MetadataMap::new();
            write_proof(&proof, &mut metadata);
            metadata.insert(header, value.parse().unwrap());
            let error = proof_from_metadata(&metadata).unwrap_err();
            assert!(
                matches!(error, AuthError::Malformed { .. }),
                "{header}={value}: {error}"
            );
            assert!(error.to_string().contains(expect), "{error}");
        }
        let mut twice = MetadataMap::new();
        write_proof(&proof, &mut twice);
        twice.append(KEY_HEADER, "ci-bot".parse().unwrap());
        let error = proof_from_metadata(&twice).unwrap_err();
        assert!(error.to_string().contains("more than once"), "{error}");
    }
}
