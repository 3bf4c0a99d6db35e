//! What the MQTT section's files hold (password, CA, client certificate,
//! the embedded broker's certificate and users), read and checked once.

use std::path::PathBuf;

use super::config::MqttConfig;
use super::PublishError;
use crate::pem;

/// Everything the client and the embedded broker read from files, read
/// and checked once: `fer-edge check` and `run` both call [`Secrets::load`],
/// so a CA file that holds no certificate fails before any connection.
#[derive(Default)]
pub struct Secrets {
    pub password: Option<String>,
    pub ca: Option<Vec<u8>>,
    /// The client's certificate chain and key (PEM).
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
    pub users: Option<crate::broker::Users>,
    /// The embedded broker's certificate chain and key (PEM).
    pub broker_tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads one file the MQTT section names (bounded, regular files only) and
/// parses it; errors name the config key, the file and the problem.
fn load_file<T>(
    what: &'static str,
    path: &std::path::Path,
    parse: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<(Vec<u8>, T), PublishError> {
    let bytes = crate::fileio::read_bounded(
        path,
        crate::fileio::SECRET_LIMIT,
        "a secret or certificate",
        "",
    )
    .map_err(|source| PublishError::File { what, source })?;
    let parsed = parse(&bytes).map_err(|problem| PublishError::BadFile {
        what,
        path: crate::fileio::shown(path),
        problem,
    })?;
    Ok((bytes, parsed))
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "is not UTF-8 text".to_string())
}

impl Secrets {
    pub fn load(cfg: &MqttConfig) -> Result<Secrets, PublishError> {
        // A certificate file and its key, both checked.
        let pair = |(wc, c): (&'static str, &PathBuf), (wk, k): (&'static str, &PathBuf)| {
            Ok::<_, PublishError>((
                load_file(wc, c, pem::chain)?.0,
                load_file(wk, k, pem::key)?.0,
            ))
        };
        let mut s = Secrets::default();
        if let Some(p) = &cfg.password_file {
            let (_, pw) = load_file("mqtt.password_file", p, |b| {
                utf8(b).map(|t| t.trim_end_matches(['\n', '\r']).to_string())
            })?;
            s.password = Some(pw);
        }
        if cfg.tls.enabled {
            if let Some(p) = &cfg.tls.ca_file {
                s.ca = Some(load_file("mqtt.tls.ca_file", p, pem::chain)?.0);
            }
            if let (Some(c), Some(k)) = (&cfg.tls.client_cert_file, &cfg.tls.client_key_file) {
                s.client_auth = Some(pair(
                    ("mqtt.tls.client_cert_file", c),
                    ("mqtt.tls.client_key_file", k),
                )?);
            }
        }
        if cfg.broker.embedded {
            if let (Some(c), Some(k)) = (&cfg.broker.tls_cert_file, &cfg.broker.tls_key_file) {
                s.broker_tls = Some(pair(
                    ("mqtt.broker.tls_cert_file", c),
                    ("mqtt.broker.tls_key_file", k),
                )?);
            }
            if let Some(p) = &cfg.broker.users_file {
                let (_, users) = load_file("mqtt.broker.users_file", p, |b| {
                    crate::broker::Users::parse(utf8(b)?)
                })?;
                s.users = Some(users);
            }
        }
        Ok(s)
    }
}
