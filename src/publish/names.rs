//! MQTT's rules for the names we put on the wire: topic levels, the topic
//! prefix and client ids (MQTT 3.1.1 §1.5.3, §3.1.3.1, §4.7).
//!
//! In: a config key and its value. Out: `Ok`, or a message naming the key,
//! the rule broken and the fix. Pure: `MqttConfig::validate` and the
//! embedded broker's gate both use it, so what the daemon may publish and
//! what the broker lets others do follow one set of rules. [`Topics`]: the
//! topic names of one device.

/// Longest device id or client id we accept. MQTT strings may be 65,535
/// bytes, but a 3.1.1 server need only accept 23-character client ids and
/// long ids end up in every topic, log line and ACL.
pub const ID_MAX_BYTES: usize = 128;
/// Longest topic prefix.
pub const PREFIX_MAX_BYTES: usize = 1024;

/// Characters MQTT strings should not carry (§1.5.3: U+0000, the C0 and C1
/// controls).
fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

fn non_empty_within(key: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{key} is empty: give it a name such as kiosk-1"));
    }
    if s.len() > max {
        return Err(format!("{key} is {} bytes long; at most {max}", s.len()));
    }
    Ok(())
}

/// Topic text: no wildcards and no controls (`/` is the caller's concern),
/// no leading `$` (topics starting with `$` belong to the broker, e.g. `$SYS`).
fn topic_text(key: &str, s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| matches!(c, '+' | '#')) {
        return Err(format!(
            "{key} = {s:?} contains {c:?}, which MQTT reserves in topics: use letters, digits, '-' or '_'"
        ));
    }
    if has_control(s) {
        return Err(format!("{key} = {s:?} contains a control character"));
    }
    if s.starts_with('$') {
        return Err(format!(
            "{key} = {s:?} starts with '$': such topics are the broker's own ($SYS) and clients cannot publish them"
        ));
    }
    Ok(())
}

/// One topic level (a device id).
pub fn topic_level(key: &str, s: &str) -> Result<(), String> {
    non_empty_within(key, s, ID_MAX_BYTES)?;
    if s.contains('/') {
        return Err(format!(
            "{key} = {s:?} contains '/', which separates topic levels: use letters, digits, '-' or '_'"
        ));
    }
    topic_text(key, s)
}

/// A topic prefix: one or more levels joined by `/`.
pub fn topic_prefix(key: &str, s: &str) -> Result<(), String> {
    non_empty_within(key, s, PREFIX_MAX_BYTES)?;
    if s.split('/').any(str::is_empty) {
        return Err(format!(
            "{key} = {s:?} has an empty level (a leading, trailing or double '/'): use e.g. \"fer-edge\" or \"site-a/fer-edge\""
        ));
    }
    topic_text(key, s)
}

/// A client id. Beyond MQTT's rules, `+ # / $` are refused: rumqttd (the
/// embedded broker) and other brokers reject ids holding them.
pub fn client_id(key: &str, s: &str) -> Result<(), String> {
    non_empty_within(key, s, ID_MAX_BYTES)?;
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#' | '$') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{key} = {s:?} contains {c:?}, which brokers (the embedded one among them) refuse in a client id: use letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// A user name or other MQTT string: no controls, within MQTT's length.
pub fn mqtt_string(key: &str, s: &str) -> Result<(), String> {
    if s.len() > 65_535 {
        return Err(format!("{key} is longer than MQTT's 65535 bytes"));
    }
    if has_control(s) {
        return Err(format!("{key} contains a control character"));
    }
    Ok(())
}

/// Topic names of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, device_id: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{device_id}"),
        }
    }
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn tracked(&self) -> String {
        format!("{}/faces/tracked", self.base)
    }
    pub fn expression(&self, track_id: u64) -> String {
        format!("{}/faces/{track_id}/expression", self.base)
    }
    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }
    pub fn stats(&self) -> String {
        format!("{}/stats", self.base)
    }
    pub fn summary(&self) -> String {
        format!("{}/summary", self.base)
    }

    pub fn source(&self) -> String {
        format!("{}/source", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        topic_level("k", "kiosk-1").unwrap();
        topic_level("k", "kiosk$1").unwrap();
        topic_prefix("k", "fer-edge").unwrap();
        topic_prefix("k", "site-a/fer-edge").unwrap();
        client_id("k", "fer-edge-kiosk-1").unwrap();
        mqtt_string("k", "robot").unwrap();
    }

    #[test]
    fn each_broken_rule_is_named() {
        let cases: &[(Result<(), String>, &str)] = &[
            (topic_level("mqtt.device_id", ""), "empty"),
            (topic_level("mqtt.device_id", "a/b"), "'/'"),
            (topic_level("mqtt.device_id", "a+"), "'+'"),
            (topic_level("mqtt.device_id", "#"), "'#'"),
            (topic_level("mqtt.device_id", "a\0b"), "control"),
            (topic_level("mqtt.device_id", "$x"), "'$'"),
            (topic_level("mqtt.device_id", &"x".repeat(129)), "129 bytes"),
            (topic_prefix("mqtt.topic_prefix", "$SYS"), "$SYS"),
            (topic_prefix("mqtt.topic_prefix", "/a"), "empty level"),
            (topic_prefix("mqtt.topic_prefix", "a//b"), "empty level"),
            (topic_prefix("mqtt.topic_prefix", "a/"), "empty level"),
            (topic_prefix("mqtt.topic_prefix", "a/+/b"), "'+'"),
            (client_id("mqtt.client_id", "fer-edge-kiosk$1"), "'$'"),
            (client_id("mqtt.client_id", "a b"), "' '"),
            (client_id("mqtt.client_id", &"é".repeat(65)), "130 bytes"),
            (mqtt_string("mqtt.username", "a\nb"), "control"),
        ];
        for (r, want) in cases {
            let e = r.as_ref().unwrap_err();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
            assert!(e.starts_with("mqtt."), "{e}");
        }
    }
}
