//! The embedded broker's users file: who may log in.
//!
//! In: the text of `[mqtt.broker] users_file`. Out: [`Users`], which checks
//! a user name and password. Each line is `user:password`, or a hash as
//! `mosquitto_passwd` writes it (`user:$7$<iterations>$<salt>$<hash>`,
//! PBKDF2-HMAC-SHA512, or the older `user:$6$<salt>$<hash>`, salted
//! SHA-512), so a technician can make the file with the tool they know.
//! Blank lines and `#` comments are skipped. Pure: no I/O.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq)]
enum Credential {
    Plain(Vec<u8>),
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// The users allowed to log in to the embedded broker.
#[derive(Clone, Default, PartialEq)]
pub struct Users {
    entries: HashMap<String, Credential>,
    plain: usize,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets or hashes.
        f.debug_struct("Users")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Users {
    /// Parses the file's text; an error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users = Users::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = || format!("line {}", n + 1);
            let (user, secret) = line.split_once(':').ok_or_else(|| {
                format!(
                    "{}: expected user:password (or a mosquitto_passwd line)",
                    at()
                )
            })?;
            if user.is_empty() || user.chars().any(char::is_control) {
                return Err(format!("{}: empty or unprintable user name", at()));
            }
            if secret.is_empty() {
                return Err(format!("{}: user {user:?} has an empty password", at()));
            }
            let cred = parse_secret(secret).map_err(|e| format!("{}: {e}", at()))?;
            if matches!(cred, Credential::Plain(_)) {
                users.plain += 1;
            }
            if users.entries.insert(user.to_string(), cred).is_some() {
                return Err(format!("{}: user {user:?} is listed twice", at()));
            }
        }
        if users.entries.is_empty() {
            return Err("lists no user: add user:password lines, or make it with mosquitto_passwd -c FILE USER".into());
        }
        Ok(users)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many users have a plain-text password (worth a warning).
    pub fn plain_text(&self) -> usize {
        self.plain
    }

    /// True when `user` is listed and `password` is theirs.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let Some(cred) = self.entries.get(user) else {
            return false;
        };
        match cred {
            Credential::Plain(p) => p.as_slice().ct_eq(password).into(),
            Credential::Sha512 { salt, hash } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                h.finalize().as_slice().ct_eq(hash).into()
            }
            Credential::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                out.as_slice().ct_eq(hash).into()
            }
        }
    }
}

fn parse_secret(secret: &str) -> Result<Credential, String> {
    let b64 = |s: &str, what: &str| {
        STANDARD
            .decode(s)
            .map_err(|e| format!("the {what} of a mosquitto_passwd hash is not base64 ({e})"))
    };
    if let Some(rest) = secret.strip_prefix("$7$") {
        let parts: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, hash] = parts[..] else {
            return Err("a $7$ hash must read $7$<iterations>$<salt>$<hash>".into());
        };
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| (1..=10_000_000).contains(i))
            .ok_or("the iteration count of a $7$ hash is not a number in 1..10000000")?;
        let hash = b64(hash, "hash")?;
        if hash.len() != 64 {
            return Err("a $7$ hash must hold 64 bytes (PBKDF2-SHA512)".into());
        }
        Ok(Credential::Pbkdf2Sha512 {
            iterations,
            salt: b64(salt, "salt")?,
            hash,
        })
    } else if let Some(rest) = secret.strip_prefix("$6$") {
        let Some((salt, hash)) = rest.split_once('$') else {
            return Err("a $6$ hash must read $6$<salt>$<hash>".into());
        };
        let hash = b64(hash, "hash")?;
        if hash.len() != 64 {
            return Err("a $6$ hash must hold 64 bytes (SHA-512)".into());
        }
        Ok(Credential::Sha512 {
            salt: b64(salt, "salt")?,
            hash,
        })
    } else if secret.starts_with('$') {
        Err("unknown hash kind: use user:password, or mosquitto_passwd's $7$ or $6$ hashes".into())
    } else {
        Ok(Credential::Plain(secret.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b FILE robot s3cret` (mosquitto 2.0.11).
    const MOSQUITTO_7: &str = "robot:$7$101$WcOCE4C7zXtRSHU3$ZD8LvBIEE2j/F+VjV4NNBJUMw8hCCCms21MGB63+dcaHU6XJP3RsCE7y8tA8uCUX9mh3nLlfT0H1W1KQBgD9JQ==";

    #[test]
    fn a_mosquitto_passwd_hash_checks_the_right_password_only() {
        let u = Users::parse(MOSQUITTO_7).unwrap();
        assert!(u.verify("robot", b"s3cret"));
        assert!(!u.verify("robot", b"s3cret "));
        assert!(!u.verify("robot", b""));
        assert!(!u.verify("kiosk", b"s3cret"));
        assert_eq!(u.plain_text(), 0);
    }

    #[test]
    fn plain_lines_comments_and_a_salted_sha512_work_together() {
        let mut h = Sha512::new();
        h.update(b"pw6");
        h.update(b"salt");
        let line6 = format!(
            "old:$6${}${}",
            STANDARD.encode(b"salt"),
            STANDARD.encode(h.finalize())
        );
        let u = Users::parse(&format!("# users\n\nui:plain pw\n{line6}\n")).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u.plain_text(), 1);
        assert!(u.verify("ui", b"plain pw"));
        assert!(u.verify("old", b"pw6"));
        assert!(!u.verify("old", b"pw7"));
    }

    #[test]
    fn broken_files_name_the_line() {
        for (text, want) in [
            ("", "lists no user"),
            ("robot", "line 1"),
            ("a:x\na:y", "listed twice"),
            ("robot:$7$101$abc", "$7$<iterations>"),
            ("robot:$7$0$YWJj$YWJj", "iteration count"),
            ("robot:$9$x", "unknown hash"),
            ("robot:", "empty password"),
        ] {
            let e = Users::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let u = Users::parse("ui:hunter2").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
