//! Updates authorised by who the client proved to be over mTLS, beside HMAC keys.
//!
//! `--update-identity ZONE=SAN` lets a client whose verified certificate carries the DNS name
//! SAN register, renew and deregister in ZONE without signing each request: the TLS
//! handshake already proved it holds the certificate's key, and the gRPC door hands the
//! verified names down. Only the connection that reached the primary counts: a node that
//! forwards an update presents its own certificate, so a forwarded update is never judged by
//! identity (the door marks it), and such updates must be sent straight to the primary.

use serde::Deserialize;

use super::AuthError;
use crate::name::Name;

/// One `ZONE=SAN` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateIdentity {
    pub zone: Name,
    /// A DNS name (subjectAltName dNSName) of the client's certificate, compared without
    /// case and without a trailing dot.
    pub san: String,
}

/// `update_identities = [{ zone = "...", san = "..." }]` in a node config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIdentityConfig {
    pub zone: String,
    pub san: String,
}

impl UpdateIdentity {
    pub fn new(zone: &str, san: &str) -> Result<UpdateIdentity, String> {
        let zone = Name::parse(zone).map_err(|error| format!("invalid zone: {error}"))?;
        let san = san.trim().trim_end_matches('.').to_ascii_lowercase();
        if san.is_empty()
            || san.len() > 253
            || !san
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'))
        {
            return Err(format!(
                "SAN {san:?} is not a DNS name (letters, digits, '-', '.', at most 253 characters)"
            ));
        }
        Ok(UpdateIdentity { zone, san })
    }

    /// `ZONE=SAN`, as `--update-identity` takes it.
    pub fn parse(text: &str) -> Result<UpdateIdentity, String> {
        let (zone, san) = text.split_once('=').ok_or_else(|| {
            "expected ZONE=SAN, for example finance.acme=ci-bot.finance.acme".to_string()
        })?;
        UpdateIdentity::new(zone, san)
    }

    fn names(&self, dns_names: &[String]) -> bool {
        dns_names
            .iter()
            .any(|name| name.trim_end_matches('.').eq_ignore_ascii_case(&self.san))
    }
}

impl TryFrom<UpdateIdentityConfig> for UpdateIdentity {
    type Error = String;

    fn try_from(config: UpdateIdentityConfig) -> Result<UpdateIdentity, String> {
        UpdateIdentity::new(&config.zone, &config.san)
    }
}

/// Whether a client whose verified certificate carries `dns_names` may update `zone`:
/// `Ok(true)` when a rule of that zone names it; `Ok(false)` when no rule names it at all
/// (the update needs an HMAC signature then); PERMISSION_DENIED when it is an identity of
/// other zones only.
pub fn authorise(
    rules: &[UpdateIdentity],
    zone: &Name,
    dns_names: &[String],
) -> Result<bool, AuthError> {
    let mut elsewhere: Vec<&UpdateIdentity> = Vec::new();
    for rule in rules.iter().filter(|rule| rule.names(dns_names)) {
        if &rule.zone == zone {
            return Ok(true);
        }
        elsewhere.push(rule);
    }
    match elsewhere.first() {
        None => Ok(false),
        Some(first) => Err(AuthError::IdentityWrongZone {
            san: first.san.clone(),
            zones: elsewhere.iter().map(|rule| rule.zone.clone()).collect(),
            zone: zone.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<UpdateIdentity> {
        vec![
            UpdateIdentity::parse("finance.acme=ci.finance.acme").unwrap(),
            UpdateIdentity::parse("acme=ops.acme").unwrap(),
        ]
    }

    fn zone(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    #[test]
    fn an_identity_updates_its_zone_and_is_denied_elsewhere() {
        let names = vec!["CI.finance.acme.".to_string()];
        assert_eq!(authorise(&rules(), &zone("finance.acme"), &names), Ok(true));
        let error = authorise(&rules(), &zone("acme"), &names).unwrap_err();
        assert!(error.is_permission_denied());
        assert_eq!(
            error.to_string(),
            "client certificate identity ci.finance.acme may update zone finance.acme, not zone acme"
        );
        // A certificate no rule names needs a signature.
        let stranger = vec!["stranger.example".to_string()];
        assert_eq!(authorise(&rules(), &zone("acme"), &stranger), Ok(false));
        assert_eq!(authorise(&rules(), &zone("acme"), &[]), Ok(false));
    }

    #[test]
    fn rules_parse_with_errors_that_say_what_to_write() {
        assert!(
            UpdateIdentity::parse("finance.acme")
                .unwrap_err()
                .contains("ZONE=SAN")
        );
        assert!(
            UpdateIdentity::parse("fin..acme=x")
                .unwrap_err()
                .contains("invalid zone")
        );
        assert!(
            UpdateIdentity::parse("acme=a b")
                .unwrap_err()
                .contains("not a DNS name")
        );
    }
}
