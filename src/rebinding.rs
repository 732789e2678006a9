//! DNS-rebinding protection for the HTTP doors (the MCP door of the gateway and of the
//! built-in agents, the admin endpoint): which `Host` headers a server answers.
//!
//! A page on any site can make a browser send requests to a server on this machine or its
//! network by pointing a name it controls at that server's address (DNS rebinding); those
//! requests carry the attacker's name in `Host`. So a server answers only Host values that
//! name it directly: loopback names and addresses (`localhost`, all of 127.0.0.0/8, `::1`),
//! the address the connection reached, and names its operator allowed. rmcp's own Host check
//! compares literal strings (`127.0.0.1`), so `127.0.1.5`, loopback too, failed it; this is
//! the one check both doors use instead.
//!
//! Pure: header text and addresses in, a verdict out. Vocabulary, so the admin endpoint and
//! the MCP plumbing share it without importing each other.

use std::net::{IpAddr, Ipv6Addr};

/// A Host header a server does not answer, with the message the client gets (HTTP 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Forbidden: Host {host:?} does not name this server (DNS-rebinding protection); it answers \
     a loopback name or address (localhost, 127.0.0.0/8, ::1) or the address it was reached \
     at ({local}){}",
    allowed_note(allowed)
)]
pub struct HostRefused {
    /// The Host header as sent (empty when there was none).
    pub host: String,
    pub local: IpAddr,
    pub allowed: Vec<String>,
}

fn allowed_note(allowed: &[String]) -> String {
    if allowed.is_empty() {
        String::new()
    } else {
        format!(", or an allowed name ({})", allowed.join(", "))
    }
}

/// The host part of a Host header value (`name`, `name:port`, `[v6]`, `[v6]:port`),
/// brackets removed; `None` when the value is not of that form.
pub fn host_part(value: &str) -> Option<&str> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (inside, port)
    } else {
        match value.rsplit_once(':') {
            // A bare IPv6 address has colons but no port; it must be bracketed in Host.
            Some((host, _)) if host.contains(':') => return None,
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    (!host.is_empty() && port_ok).then_some(host)
}

/// Whether `host` (a Host header's host part) is a loopback name or address: `localhost`
/// (any case, with or without a trailing dot), any IPv4 address of 127.0.0.0/8, `::1`, or an
/// IPv4-mapped loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    if host.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// A request's Host: the header, or the URI's authority (HTTP/2 carries it there); `None`
/// when it has neither (or the header is not text).
pub fn request_host<B>(request: &http::Request<B>) -> Option<&str> {
    match request.headers().get(http::header::HOST) {
        Some(value) => value.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    }
}

/// Whether a server whose connection arrived at `local` answers a request whose Host header
/// is `header`: a loopback name or address, `local` itself (any port), or one of `allowed`
/// (names or addresses, compared without case and port).
pub fn check_host(
    header: Option<&str>,
    local: IpAddr,
    allowed: &[String],
) -> Result<(), HostRefused> {
    let refused = || HostRefused {
        host: header.unwrap_or_default().to_string(),
        local,
        allowed: allowed.to_vec(),
    };
    let host = header.and_then(host_part).ok_or_else(refused)?;
    if is_loopback_host(host) {
        return Ok(());
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && ip.to_canonical() == local.to_canonical()
        && !local.is_unspecified()
    {
        return Ok(());
    }
    let name = host.trim_end_matches('.');
    let matches = |entry: &String| {
        let entry = host_part(entry).unwrap_or(entry);
        entry.trim_end_matches('.').eq_ignore_ascii_case(name)
            || entry
                .parse::<Ipv6Addr>()
                .ok()
                .zip(name.parse::<Ipv6Addr>().ok())
                .is_some_and(|(a, b)| a == b)
    };
    if allowed.iter().any(matches) {
        return Ok(());
    }
    Err(refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn host_parts_are_read_with_and_without_ports() {
        assert_eq!(host_part("localhost:8000"), Some("localhost"));
        assert_eq!(host_part("127.0.1.5"), Some("127.0.1.5"));
        assert_eq!(host_part("[::1]:80"), Some("::1"));
        assert_eq!(host_part("[::1]"), Some("::1"));
        assert_eq!(host_part("::1"), None, "IPv6 must be bracketed");
        assert_eq!(host_part("a:"), None);
        assert_eq!(host_part("a:99999"), None);
        assert_eq!(host_part("[::1]x"), None);
        assert_eq!(host_part(""), None);
    }

    #[test]
    fn every_loopback_address_and_localhost_pass() {
        for host in [
            "localhost",
            "LOCALHOST:1",
            "localhost.:8000",
            "127.0.0.1:8000",
            "127.0.1.5:8000",
            "127.255.255.254",
            "[::1]:8000",
            "[::ffff:127.0.0.2]:1",
        ] {
            assert_eq!(check_host(Some(host), LOCAL, &[]), Ok(()), "{host}");
        }
    }

    #[test]
    fn other_names_fail_unless_they_are_the_local_address_or_allowed() {
        for host in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "128.0.0.1",
            "10.0.0.5",
            "0.0.0.0",
            "127.1",
        ] {
            let refused = check_host(Some(host), LOCAL, &[]).unwrap_err();
            assert!(
                refused.to_string().contains(&format!("{host:?}")),
                "{refused}"
            );
        }
        assert!(check_host(None, LOCAL, &[]).is_err());
        let lan: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(check_host(Some("10.0.0.5:9300"), lan, &[]), Ok(()));
        assert!(check_host(Some("10.0.0.6:9300"), lan, &[]).is_err());
        let unspecified: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(check_host(Some("0.0.0.0:9300"), unspecified, &[]).is_err());
        let allowed = vec!["metrics.internal".to_string(), "[fd00::5]".to_string()];
        assert_eq!(
            check_host(Some("Metrics.Internal:9300"), lan, &allowed),
            Ok(())
        );
        assert_eq!(check_host(Some("[fd00::5]:1"), lan, &allowed), Ok(()));
        let refused = check_host(Some("other.internal"), lan, &allowed).unwrap_err();
        assert!(
            refused.to_string().contains("metrics.internal"),
            "{refused}"
        );
    }
}
