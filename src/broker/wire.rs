//! The few MQTT packets the embedded broker's gate reads and writes:
//! CONNECT (read, and re-written with the gate's own login), CONNACK (a
//! refusal), and the topic of a client's PUBLISH (MQTT 3.1, 3.1.1 and 5).
//!
//! In: bytes of one packet. Out: a parsed [`Connect`] or topic, or a
//! [`WireError`] saying what is malformed. Pure: no I/O, unit-tested on
//! packets as `mosquitto_pub` and paho send them.

/// A packet that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MQTT packet: {0}")]
pub struct WireError(pub &'static str);

type Result<T> = std::result::Result<T, WireError>;

/// MQTT packet types (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
pub const PUBLISH: u8 = 3;

/// Decodes a variable byte integer; returns the value and its length, or
/// `None` when more bytes are needed.
pub fn read_varint(bytes: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().enumerate().take(4) {
        value |= ((b & 0x7F) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(WireError("remaining length longer than 4 bytes"))
    } else {
        Ok(None)
    }
}

pub fn write_varint(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return;
        }
    }
}

/// A cursor over a packet body.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(WireError("packet shorter than its fields"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn binary(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.binary()?.to_vec()).map_err(|_| WireError("a string is not UTF-8"))
    }
    fn varint(&mut self) -> Result<usize> {
        match read_varint(&self.b[self.at..])? {
            Some((v, n)) => {
                self.at += n;
                Ok(v)
            }
            None => Err(WireError("truncated variable byte integer")),
        }
    }
    /// A v5 property block, returned raw.
    fn properties(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        self.take(n)
    }
    fn rest(&self) -> &'a [u8] {
        &self.b[self.at..]
    }
}

/// A CONNECT packet, as far as the gate needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// "MQTT" (3.1.1, 5) or "MQIsdp" (3.1).
    pub protocol_name: String,
    /// 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub level: u8,
    pub clean_start: bool,
    pub keep_alive: u16,
    /// v5 CONNECT properties, raw.
    pub properties: Vec<u8>,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub qos: u8,
    pub retain: bool,
    /// v5 will properties, raw.
    pub properties: Vec<u8>,
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Connect {
    /// Parses the body of a CONNECT (after the fixed header). For a level
    /// it does not know, only the name and level are filled in.
    pub fn parse(body: &[u8]) -> Result<Connect> {
        let mut r = Reader { b: body, at: 0 };
        let protocol_name = r.string()?;
        let level = r.u8()?;
        let mut c = Connect {
            protocol_name,
            level,
            clean_start: false,
            keep_alive: 0,
            properties: Vec::new(),
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
        };
        if !matches!(level, 3..=5) {
            return Ok(c);
        }
        let flags = r.u8()?;
        if flags & 1 != 0 {
            return Err(WireError("reserved CONNECT flag set"));
        }
        c.clean_start = flags & 0x02 != 0;
        c.keep_alive = r.u16()?;
        if level == 5 {
            c.properties = r.properties()?.to_vec();
        }
        c.client_id = r.string()?;
        if flags & 0x04 != 0 {
            let properties = if level == 5 {
                r.properties()?.to_vec()
            } else {
                Vec::new()
            };
            c.will = Some(Will {
                qos: (flags >> 3) & 0x03,
                retain: flags & 0x20 != 0,
                properties,
                topic: r.string()?,
                payload: r.binary()?.to_vec(),
            });
        }
        if flags & 0x80 != 0 {
            c.username = Some(r.string()?);
        }
        if flags & 0x40 != 0 {
            c.password = Some(r.binary()?.to_vec());
        }
        if !r.rest().is_empty() {
            return Err(WireError("bytes after the CONNECT payload"));
        }
        Ok(c)
    }

    /// Encodes the whole packet (fixed header included).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let put_bin = |b: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(b);
        };
        put_bin(self.protocol_name.as_bytes(), &mut body);
        body.push(self.level);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos & 3) << 3;
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if self.level == 5 {
            write_varint(self.properties.len(), &mut body);
            body.extend_from_slice(&self.properties);
        }
        put_bin(self.client_id.as_bytes(), &mut body);
        if let Some(w) = &self.will {
            if self.level == 5 {
                write_varint(w.properties.len(), &mut body);
                body.extend_from_slice(&w.properties);
            }
            put_bin(w.topic.as_bytes(), &mut body);
            put_bin(&w.payload, &mut body);
        }
        if let Some(u) = &self.username {
            put_bin(u.as_bytes(), &mut body);
        }
        if let Some(p) = &self.password {
            put_bin(p, &mut body);
        }
        let mut out = vec![CONNECT << 4];
        write_varint(body.len(), &mut out);
        out.extend_from_slice(&body);
        out
    }
}

/// Why the gate refuses a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ProtocolVersion,
    ClientId,
    BadLogin,
    NotAuthorized,
}

/// The CONNACK that refuses a connection, in the client's protocol version.
pub fn connack_refusal(level: u8, why: Refusal) -> Vec<u8> {
    if level == 5 {
        let reason = match why {
            Refusal::ProtocolVersion => 0x84,
            Refusal::ClientId => 0x85,
            Refusal::BadLogin => 0x86,
            Refusal::NotAuthorized => 0x87,
        };
        vec![0x20, 0x03, 0x00, reason, 0x00]
    } else {
        let rc = match why {
            Refusal::ProtocolVersion => 1,
            Refusal::ClientId => 2,
            Refusal::BadLogin => 4,
            Refusal::NotAuthorized => 5,
        };
        vec![0x20, 0x02, 0x00, rc]
    }
}

/// Reads the topic of a client's PUBLISH. MQTT 5 clients may send an empty
/// topic with a topic alias; `aliases` keeps what each alias stands for on
/// this connection, so the topic the broker will use is always known.
pub fn publish_topic(
    first_byte: u8,
    body: &[u8],
    level: u8,
    aliases: &mut std::collections::HashMap<u16, String>,
) -> Result<String> {
    let mut r = Reader { b: body, at: 0 };
    let topic = r.string()?;
    if level < 5 {
        return Ok(topic);
    }
    if (first_byte >> 1) & 0x03 > 0 {
        r.u16()?; // packet identifier
    }
    let props = r.properties()?;
    let mut p = Reader { b: props, at: 0 };
    let mut alias = None;
    while !p.rest().is_empty() {
        match p.varint()? {
            0x01 => {
                p.u8()?;
            }
            0x02 => {
                p.take(4)?;
            }
            0x23 => alias = Some(p.u16()?),
            0x08 | 0x03 => {
                p.string()?;
            }
            0x09 => {
                p.binary()?;
            }
            0x26 => {
                p.string()?;
                p.string()?;
            }
            0x0B => {
                p.varint()?;
            }
            _ => return Err(WireError("unknown PUBLISH property")),
        }
    }
    match (topic.is_empty(), alias) {
        (false, Some(a)) => {
            aliases.insert(a, topic.clone());
            Ok(topic)
        }
        (false, None) => Ok(topic),
        (true, Some(a)) => aliases
            .get(&a)
            .cloned()
            .ok_or(WireError("topic alias used before it was set")),
        (true, None) => Err(WireError("empty topic without a topic alias")),
    }
}

/// Bytes of a client's PUBLISH payload (after the topic, packet id and,
/// for MQTT 5, the properties). A retained PUBLISH with an empty payload
/// clears that topic's retained message.
pub fn publish_payload_len(first_byte: u8, body: &[u8], level: u8) -> Result<usize> {
    let mut r = Reader { b: body, at: 0 };
    r.binary()?; // topic
    if (first_byte >> 1) & 0x03 > 0 {
        r.u16()?; // packet identifier
    }
    if level >= 5 {
        r.properties()?;
    }
    Ok(r.rest().len())
}

/// True when `topic` is `prefix` itself or lies under it.
pub fn under_prefix(topic: &str, prefix: &str) -> bool {
    topic == prefix
        || topic
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The CONNECT `mosquitto_sub -V mqttv311 -i sub1 -u robot -P pw` sends
    /// (keep alive 60, clean session), minus its fixed header.
    fn connect_311() -> Vec<u8> {
        let mut b = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
        b.extend_from_slice(&[0, 4, b's', b'u', b'b', b'1']);
        b.extend_from_slice(&[0, 5, b'r', b'o', b'b', b'o', b't']);
        b.extend_from_slice(&[0, 2, b'p', b'w']);
        b
    }

    #[test]
    fn a_311_connect_parses_and_reencodes_byte_for_byte() {
        let body = connect_311();
        let c = Connect::parse(&body).unwrap();
        assert_eq!(
            (c.level, c.client_id.as_str(), c.username.as_deref()),
            (4, "sub1", Some("robot"))
        );
        assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        let mut whole = vec![0x10, body.len() as u8];
        whole.extend_from_slice(&body);
        assert_eq!(c.encode(), whole);
    }

    #[test]
    fn a_v5_connect_with_properties_and_a_will_round_trips() {
        let c = Connect {
            protocol_name: "MQTT".into(),
            level: 5,
            clean_start: true,
            keep_alive: 30,
            properties: vec![0x11, 0, 0, 0, 10], // session expiry 10 s
            client_id: "paho".into(),
            will: Some(Will {
                qos: 1,
                retain: true,
                properties: vec![],
                topic: "robots/r1/status".into(),
                payload: b"gone".to_vec(),
            }),
            username: None,
            password: None,
        };
        let bytes = c.encode();
        let (len, n) = read_varint(&bytes[1..]).unwrap().unwrap();
        assert_eq!(bytes.len(), 1 + n + len);
        assert_eq!(Connect::parse(&bytes[1 + n..]).unwrap(), c);
    }

    #[test]
    fn an_mqtt_31_connect_is_read_far_enough_to_refuse_it() {
        let mut b = vec![0, 6];
        b.extend_from_slice(b"MQIsdp");
        b.extend_from_slice(&[3, 0x02, 0, 60, 0, 1, b'x']);
        let c = Connect::parse(&b).unwrap();
        assert_eq!((c.protocol_name.as_str(), c.level), ("MQIsdp", 3));
        assert_eq!(
            connack_refusal(3, Refusal::ProtocolVersion),
            vec![0x20, 2, 0, 1]
        );
        assert_eq!(
            connack_refusal(5, Refusal::NotAuthorized),
            vec![0x20, 3, 0, 0x87, 0]
        );
    }

    #[test]
    fn truncated_and_reserved_bit_connects_are_malformed() {
        let body = connect_311();
        for cut in [1, 5, 9, body.len() - 1] {
            assert!(Connect::parse(&body[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = body.clone();
        bad[7] |= 1;
        assert!(Connect::parse(&bad).is_err());
    }

    #[test]
    fn varints_round_trip_and_a_fifth_byte_is_refused() {
        for v in [0, 127, 128, 16_383, 16_384, 268_435_455] {
            let mut out = Vec::new();
            write_varint(v, &mut out);
            assert_eq!(read_varint(&out).unwrap(), Some((v, out.len())));
        }
        assert_eq!(read_varint(&[0x80, 0x80]).unwrap(), None);
        assert!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    }

    fn publish_v5(topic: &str, qos: u8, props: &[u8]) -> (u8, Vec<u8>) {
        let mut b = vec![0, topic.len() as u8];
        b.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            b.extend_from_slice(&[0, 7]);
        }
        b.push(props.len() as u8);
        b.extend_from_slice(props);
        b.extend_from_slice(b"payload");
        (0x30 | qos << 1, b)
    }

    #[test]
    fn a_v5_topic_alias_resolves_to_the_topic_it_was_set_with() {
        let mut aliases = HashMap::new();
        let (f, b) = publish_v5("fer-edge/kiosk-1/events", 1, &[0x23, 0, 3]);
        assert_eq!(
            publish_topic(f, &b, 5, &mut aliases).unwrap(),
            "fer-edge/kiosk-1/events"
        );
        let (f, b) = publish_v5("", 0, &[0x01, 1, 0x23, 0, 3]);
        assert_eq!(
            publish_topic(f, &b, 5, &mut aliases).unwrap(),
            "fer-edge/kiosk-1/events"
        );
        let (f, b) = publish_v5("", 0, &[0x23, 0, 9]);
        assert!(publish_topic(f, &b, 5, &mut aliases).is_err());
        let (f, b) = publish_v5("", 0, &[]);
        assert!(publish_topic(f, &b, 5, &mut aliases).is_err());
    }

    #[test]
    fn a_311_publish_topic_is_its_first_field() {
        let b = [&[0u8, 3][..], b"a/b", b"data"].concat();
        assert_eq!(
            publish_topic(0x30, &b, 4, &mut HashMap::new()).unwrap(),
            "a/b"
        );
    }

    #[test]
    fn prefix_matching_is_by_whole_levels() {
        assert!(under_prefix("fer-edge/kiosk-1/events", "fer-edge"));
        assert!(under_prefix("fer-edge", "fer-edge"));
        assert!(!under_prefix("fer-edgeX/kiosk", "fer-edge"));
        assert!(!under_prefix("robots/fer-edge", "fer-edge"));
    }
}
