//! Node configuration files (`deploy/nodes/*.toml`): the `aop node` flags, written down.
//!
//! Keys mirror the flags (`grpc` for `--grpc`, `zones` for `--zone`, ...); a flag given on
//! the command line wins over the file. Relative zone paths are relative to the config
//! file's directory, so a config works from any working directory.
//!
//! The keys a file may hold are the fields of [`NodeConfigFile`], read from its derived
//! `Deserialize` ([`NodeConfigFile::keys`], [`help_key_list`]) rather than written out a
//! second time, so the list `aop node --help` prints cannot fall behind the loader.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Visitor};

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    /// Names the node in `served_by`; default: its gRPC address.
    pub node_id: Option<String>,
    /// The gRPC listen address, such as `127.0.0.1:7100`.
    pub grpc: Option<SocketAddr>,
    /// The gRPC URL other nodes reach this node at, such as
    /// `https://aop-finance-0.aop-finance.aop.svc.cluster.local:7100` (default: the URL of
    /// `grpc`; give it when `grpc` is a wildcard address such as `0.0.0.0:7100`).
    pub advertise: Option<String>,
    /// The DNS door's listen address (UDP and TCP), such as `127.0.0.2:53`.
    pub dns: Option<SocketAddr>,
    /// The admin endpoint's listen address (metrics, health, status page), such as
    /// `127.0.0.1:7300`.
    pub admin: Option<SocketAddr>,
    /// Host names the admin endpoint answers besides loopback names and addresses and the
    /// address a request reached (DNS-rebinding protection), such as `node1.mgmt`.
    #[serde(default)]
    pub admin_allow_hosts: Vec<String>,
    /// Zone files this node is primary for.
    #[serde(default)]
    pub zones: Vec<PathBuf>,
    /// Root hints: gRPC URLs of the root zone's servers, for recursion.
    #[serde(default)]
    pub roots: Vec<String>,
    /// How long past its TTL a cached answer may be served stale, such as "1d" or "30m".
    pub max_stale: Option<String>,
    /// Where the node keeps its store (`aop.redb`); relative to the config file.
    pub data_dir: Option<PathBuf>,
    /// Zones served as a secondary: `[[secondary]]` tables with `zone` and `primary`.
    #[serde(default)]
    pub secondary: Vec<SecondaryConfig>,
    /// Keys accepted for updates: `[[update_key]]` tables (the lines `aop key new` prints).
    #[serde(default)]
    pub update_key: Vec<crate::keys::UpdateKeyConfig>,
    /// Key files accepted for updates (written by `aop key new`); relative to the file.
    #[serde(default)]
    pub update_key_files: Vec<PathBuf>,
    /// Client certificate identities accepted for updates without a signature (mTLS):
    /// `update_identities = [{ zone = "finance.acme", san = "ci.finance.acme" }]`.
    #[serde(default)]
    pub update_identities: Vec<crate::keys::identity::UpdateIdentityConfig>,
    /// NOTIFY secondaries of every change (default true).
    pub notify: Option<bool>,
    /// gRPC requests in flight at once (default 1024).
    pub max_concurrent: Option<u32>,
    /// gRPC connections open at once (default 8192), and per client address (default 512).
    pub max_connections: Option<u32>,
    pub max_connections_per_client: Option<u32>,
    /// TLS: `[tls]` with `cert`, `key`, `client_ca`, `ca` (flags `--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`, `--ca`); paths relative to the file.
    pub tls: Option<TlsConfig>,
    /// Endpoint health probes in flight at once (default 256); 0: this node does not probe
    /// the endpoints of the zones it is primary for.
    pub health_probes: Option<u32>,
    /// Gossip with the operator's other nodes: a `[membership]` table.
    pub membership: Option<MembershipFileConfig>,
    /// DNS answers per second per client /24 or /56 over UDP; more are truncated or
    /// dropped (default: no limit).
    pub dns_rate_limit: Option<u32>,
}

/// `[membership]`: the flags `--gossip`, `--gossip-seed` and `--gossip-key`, written down.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipFileConfig {
    /// The UDP address to gossip on, such as `10.0.0.5:7400` (a specific address: the
    /// other members send to it).
    pub bind: Option<SocketAddr>,
    /// Gossip addresses of members to announce to at start.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// The group key file (32 octets in base64); relative to the config file.
    pub key_file: Option<PathBuf>,
}

/// The `[tls]` table of a node config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The gRPC door's certificate chain (PEM); with `key`, the door speaks TLS only.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Trusted beside the system roots when this node reaches `https://` nodes.
    pub ca: Option<PathBuf>,
}

/// A zone this node serves as a secondary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    pub zone: String,
    /// The primary's gRPC URL.
    pub primary: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl NodeConfigFile {
    /// Every top-level key the loader accepts, in the order the struct declares them.
    pub fn keys() -> &'static [&'static str] {
        struct_fields::<NodeConfigFile>()
    }

    pub fn load(path: &Path) -> Result<NodeConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// A config file's text read as [`NodeConfigFile::load`] reads it: errors name `path`,
    /// and relative paths in it are taken relative to `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<NodeConfigFile, ConfigError> {
        let mut config: NodeConfigFile =
            crate::zone::spanned::from_str(text).map_err(|diagnostic| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: diagnostic.line,
                column: diagnostic.column,
                message: diagnostic.message,
            })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let tls = config.tls.get_or_insert_with(TlsConfig::default);
        let tls_paths = tls
            .cert
            .iter_mut()
            .chain(tls.key.iter_mut())
            .chain(tls.client_ca.iter_mut())
            .chain(tls.ca.iter_mut());
        for path in config
            .zones
            .iter_mut()
            .chain(config.update_key_files.iter_mut())
            .chain(config.data_dir.iter_mut())
            .chain(tls_paths)
            .chain(
                config
                    .membership
                    .iter_mut()
                    .flat_map(|membership| membership.key_file.iter_mut()),
            )
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }
}

impl SecondaryConfig {
    /// The keys of a `[[secondary]]` table.
    pub fn keys() -> &'static [&'static str] {
        struct_fields::<SecondaryConfig>()
    }
}

/// Every key a node config accepts, for help texts: the top-level keys in the loader's
/// order, each array of tables written `[[name]] (its keys)`, such as `[[secondary]] (zone,
/// primary)`.
pub fn help_key_list() -> String {
    NodeConfigFile::keys()
        .iter()
        .map(|key| {
            let table = match *key {
                "secondary" => Some(SecondaryConfig::keys()),
                "update_key" => Some(struct_fields::<crate::keys::UpdateKeyConfig>()),
                _ => None,
            };
            match (table, *key) {
                (Some(inner), _) => format!("[[{key}]] ({})", inner.join(", ")),
                (None, "update_identities") => format!(
                    "update_identities = [{{ {} }}]",
                    struct_fields::<crate::keys::identity::UpdateIdentityConfig>().join(", ")
                ),
                (None, "membership") => format!(
                    "[membership] ({})",
                    struct_fields::<MembershipFileConfig>().join(", ")
                ),
                (None, "tls") => format!("[tls] ({})", struct_fields::<TlsConfig>().join(", ")),
                (None, _) => (*key).to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The field names a derived `Deserialize` of a struct hands its deserializer (serde passes
/// them to `deserialize_struct`, which is all this deserializer answers); empty for a type
/// that is not deserialised as a struct.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for &mut Fields {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only a struct's field names are read"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("field names read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields = Fields(None);
    // The error is the point: the deserializer stops once it has the names.
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_list_is_the_loaders() {
        let keys = NodeConfigFile::keys();
        assert_eq!(keys.first(), Some(&"node_id"));
        for key in [
            "grpc",
            "secondary",
            "update_key",
            "max_connections_per_client",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        let help = help_key_list();
        assert!(help.contains("[[secondary]] (zone, primary)"), "{help}");
        assert!(
            help.contains("[[update_key]] (name, zone, algorithm, secret)"),
            "{help}"
        );
        assert!(
            help.contains("[membership] (bind, seeds, key_file)"),
            "{help}"
        );
    }

    #[test]
    fn membership_is_a_table_with_a_key_file_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "grpc = \"127.0.0.1:1\"\n[membership]\nbind = \"10.0.0.5:7400\"\n\
             seeds = [\"10.0.0.6:7400\"]\nkey_file = \"gossip.key\"\n",
        )
        .unwrap();
        let config = NodeConfigFile::load(&path).unwrap();
        let membership = config.membership.unwrap();
        assert_eq!(
            membership.bind,
            Some(SocketAddr::from(([10, 0, 0, 5], 7400)))
        );
        assert_eq!(membership.seeds, [SocketAddr::from(([10, 0, 0, 6], 7400))]);
        assert_eq!(membership.key_file, Some(dir.path().join("gossip.key")));
        std::fs::write(&path, "[membership]\nbind = \"10.0.0.5:7400\"\nport = 1\n").unwrap();
        let error = NodeConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("node.toml:3:1: unknown field `port`"),
            "{error}"
        );
    }

    #[test]
    fn tls_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "grpc = \"127.0.0.1:1\"\n[tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nca = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let tls = NodeConfigFile::load(&path).unwrap().tls.unwrap();
        assert_eq!(tls.cert, Some(dir.path().join("n.pem")));
        assert_eq!(tls.key, Some(dir.path().join("n.key")));
        assert_eq!(tls.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(tls.client_ca, None);
        assert!(help_key_list().contains("[tls] (cert, key, client_ca, ca)"));
        std::fs::write(&path, "[tls]\ncertificate = \"n.pem\"\n").unwrap();
        let error = NodeConfigFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `certificate`"), "{error}");
    }

    #[test]
    fn the_admin_address_is_a_key_like_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "grpc = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:7300\"\n",
        )
        .unwrap();
        let config = NodeConfigFile::load(&path).unwrap();
        assert_eq!(config.admin, Some(SocketAddr::from(([127, 0, 0, 1], 7300))));
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "grpc = \"127.0.0.1:1\"\ncolour = \"blue\"\n").unwrap();
        let error = NodeConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("node.toml:2:1: unknown field `colour`"),
            "{error}"
        );
    }
}
