//! Answers: what a lookup returns (`ResolveResponse`) and the steps of its trace.

use std::sync::Arc;

use super::records::{peer_name, referral};
use super::{PeerDataError, pb};
use crate::answer::{Answer, Outcome, TraceStep};
use crate::record::{Agent, Alias, Delegation, limits};

impl From<&Answer> for pb::ResolveResponse {
    fn from(answer: &Answer) -> pb::ResolveResponse {
        let (outcome, agent, referral_msg, alias_target) = match &answer.outcome {
            Outcome::Answer(agent) => (
                pb::Outcome::Answer,
                Some(pb::Agent::from(&**agent)),
                None,
                String::new(),
            ),
            Outcome::Alias { target } => (pb::Outcome::Alias, None, None, target.to_string()),
            Outcome::Referral(delegation) => (
                pb::Outcome::Referral,
                None,
                Some(referral(delegation, answer.ttl)),
                String::new(),
            ),
            Outcome::NxDomain => (pb::Outcome::Nxdomain, None, None, String::new()),
            Outcome::NoData => (pb::Outcome::Nodata, None, None, String::new()),
        };
        pb::ResolveResponse {
            name: answer.name.to_string(),
            outcome: outcome as i32,
            zone: answer.zone.to_string(),
            ttl: answer.ttl,
            authoritative: answer.authoritative,
            served_by: answer.served_by.to_string(),
            stale: answer.stale,
            agent,
            aliases: answer
                .aliases
                .iter()
                .map(|alias| pb::Alias::from(&**alias))
                .collect(),
            referral: referral_msg,
            alias_target,
            zone_serial: answer.zone_serial,
            recursion_available: answer.recursion_available,
            trace: answer.trace.iter().map(pb::TraceStep::from).collect(),
        }
    }
}

fn outcome_from_word(word: Option<&str>) -> pb::Outcome {
    match word {
        Some("answer") => pb::Outcome::Answer,
        Some("alias") => pb::Outcome::Alias,
        Some("referral") => pb::Outcome::Referral,
        Some("nxdomain") => pb::Outcome::Nxdomain,
        Some("nodata") => pb::Outcome::Nodata,
        _ => pb::Outcome::Unspecified,
    }
}

fn outcome_word(outcome: pb::Outcome) -> Option<&'static str> {
    match outcome {
        pb::Outcome::Answer => Some("answer"),
        pb::Outcome::Alias => Some("alias"),
        pb::Outcome::Referral => Some("referral"),
        pb::Outcome::Nxdomain => Some("nxdomain"),
        pb::Outcome::Nodata => Some("nodata"),
        pb::Outcome::Unspecified => None,
    }
}

impl From<&TraceStep> for pb::TraceStep {
    fn from(step: &TraceStep) -> pb::TraceStep {
        pb::TraceStep {
            server: step.server.clone(),
            zone: step.zone.to_string(),
            outcome: outcome_from_word(step.outcome) as i32,
            latency_us: step.latency_us,
            cached: step.cached,
            authoritative: step.authoritative,
            error: step.error.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::ResolveResponse> for Answer {
    type Error = PeerDataError;

    fn try_from(response: pb::ResolveResponse) -> Result<Answer, PeerDataError> {
        let pb::ResolveResponse {
            name,
            outcome,
            zone,
            ttl,
            authoritative,
            served_by,
            stale,
            agent,
            aliases,
            referral,
            alias_target,
            zone_serial,
            recursion_available,
            trace,
        } = response;
        let outcome = match pb::Outcome::try_from(outcome) {
            Ok(pb::Outcome::Answer) => {
                let agent = agent.ok_or(PeerDataError::Missing { field: "agent" })?;
                Outcome::Answer(Arc::new(Agent::try_from(agent)?))
            }
            Ok(pb::Outcome::Alias) => Outcome::Alias {
                target: peer_name("alias target", &alias_target)?,
            },
            Ok(pb::Outcome::Referral) => {
                let referral = referral.ok_or(PeerDataError::Missing { field: "referral" })?;
                Outcome::Referral(Arc::new(Delegation::try_from(referral)?))
            }
            Ok(pb::Outcome::Nxdomain) => Outcome::NxDomain,
            Ok(pb::Outcome::Nodata) => Outcome::NoData,
            Ok(pb::Outcome::Unspecified) | Err(_) => {
                return Err(PeerDataError::UnknownOutcome(outcome));
            }
        };
        let aliases = aliases
            .into_iter()
            .map(|alias| {
                Ok(Arc::new(Alias {
                    name: peer_name("alias name", &alias.name)?,
                    target: peer_name("alias target", &alias.target)?,
                    ttl: (alias.ttl > 0).then_some(alias.ttl),
                }))
            })
            .collect::<Result<Vec<_>, PeerDataError>>()?;
        let trace = trace
            .into_iter()
            .map(|step| {
                Ok(TraceStep {
                    server: step.server,
                    zone: peer_name("trace zone", &step.zone)?,
                    outcome: pb::Outcome::try_from(step.outcome)
                        .ok()
                        .and_then(outcome_word),
                    latency_us: step.latency_us,
                    cached: step.cached,
                    authoritative: step.authoritative,
                    error: (!step.error.is_empty()).then_some(step.error),
                })
            })
            .collect::<Result<Vec<_>, PeerDataError>>()?;
        Ok(Answer {
            name: peer_name("name", &name)?,
            outcome,
            aliases,
            zone: peer_name("zone", &zone)?,
            zone_serial,
            ttl: ttl.min(limits::TTL_MAX),
            authoritative,
            served_by: Arc::from(served_by),
            stale,
            recursion_available,
            trace,
        })
    }
}
