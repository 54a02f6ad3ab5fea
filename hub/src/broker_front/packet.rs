//! Just enough of MQTT 3.1.1 to check what a client sends: framing (fixed header and remaining
//! length), CONNECT, PUBLISH's topic, SUBSCRIBE and UNSUBSCRIBE, and the two answers the front
//! writes itself (CONNACK refusals and SUBACK failures).
//!
//! Every function takes arbitrary bytes and returns an error instead of panicking: nothing
//! indexes without a bound check, and lengths are checked before they are trusted.

use std::fmt;

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const PINGREQ: u8 = 12;
pub const DISCONNECT: u8 = 14;

/// CONNACK return codes (MQTT 3.1.1, 3.2.2.3).
pub const CONNACK_UNACCEPTABLE_PROTOCOL: u8 = 0x01;
pub const CONNACK_BAD_CREDENTIALS: u8 = 0x04;
pub const CONNACK_NOT_AUTHORIZED: u8 = 0x05;
/// The SUBACK return code for a refused filter.
pub const SUBACK_FAILURE: u8 = 0x80;

/// Why bytes are not a packet the front accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// The remaining length runs past four bytes.
    MalformedLength,
    /// The remaining length is over the broker's limit.
    TooLarge { size: usize, max: usize },
    /// The packet's contents do not parse.
    Malformed(&'static str),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::MalformedLength => write!(f, "malformed remaining length"),
            PacketError::TooLarge { size, max } => {
                write!(f, "a packet of {size} bytes is over the limit of {max}")
            }
            PacketError::Malformed(what) => write!(f, "malformed packet: {what}"),
        }
    }
}

impl std::error::Error for PacketError {}

/// The fixed header of a packet whose header bytes have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: packet type (high nibble) and flags (low nibble).
    pub first: u8,
    /// The fixed header's length (1 + the remaining length's bytes).
    pub header_len: usize,
    /// The remaining length.
    pub body_len: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    pub fn flags(&self) -> u8 {
        self.first & 0x0f
    }

    /// The whole packet's length.
    pub fn total_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// Reads the fixed header at the start of `buf`: `Ok(None)` until enough bytes have arrived;
/// an error as soon as the remaining length is malformed or over `max_body` (before the body
/// arrives, so an announced giant is refused without buffering it).
///
/// # Errors
/// [`PacketError::MalformedLength`], [`PacketError::TooLarge`].
pub fn frame(buf: &[u8], max_body: usize) -> Result<Option<Frame>, PacketError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut body_len = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        body_len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if body_len > max_body {
                return Err(PacketError::TooLarge {
                    size: body_len,
                    max: max_body,
                });
            }
            return Ok(Some(Frame {
                first,
                header_len: 2 + i,
                body_len,
            }));
        }
    }
    Err(PacketError::MalformedLength)
}

/// Follows packet boundaries in a byte stream without keeping any of it, so the front can
/// put its own packets between the broker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Boundaries {
    /// The next byte starts a packet.
    #[default]
    Start,
    /// Inside the remaining length: its value so far and the bytes read.
    Length { value: usize, bytes: u32 },
    /// Inside a body, with this many bytes left.
    Body(usize),
}

impl Boundaries {
    pub fn at_boundary(&self) -> bool {
        *self == Boundaries::Start
    }

    /// Advances over `data`.
    ///
    /// # Errors
    /// [`PacketError::MalformedLength`].
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), PacketError> {
        while let Some((&byte, rest)) = data.split_first() {
            match *self {
                Boundaries::Start => {
                    data = rest;
                    *self = Boundaries::Length { value: 0, bytes: 0 };
                }
                Boundaries::Length { value, bytes } => {
                    data = rest;
                    let value = value | usize::from(byte & 0x7f) << (7 * bytes);
                    *self = if byte & 0x80 == 0 {
                        if value == 0 {
                            Boundaries::Start
                        } else {
                            Boundaries::Body(value)
                        }
                    } else if bytes + 1 == 4 {
                        return Err(PacketError::MalformedLength);
                    } else {
                        Boundaries::Length {
                            value,
                            bytes: bytes + 1,
                        }
                    };
                }
                Boundaries::Body(left) => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    *self = if left == take {
                        Boundaries::Start
                    } else {
                        Boundaries::Body(left - take)
                    };
                }
            }
        }
        Ok(())
    }
}

/// A CONNECT's fields the front checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub will_topic: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

/// Why a CONNECT is refused with a CONNACK rather than a silent close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Not MQTT 3.1.1 (the only version the embedded broker speaks).
    Protocol(String),
    Packet(PacketError),
}

impl From<PacketError> for ConnectError {
    fn from(error: PacketError) -> Self {
        ConnectError::Packet(error)
    }
}

/// Parses a CONNECT body (MQTT 3.1.1, 3.1).
///
/// # Errors
/// [`ConnectError::Protocol`] for another protocol name or level; malformed packets.
pub fn parse_connect<'a>(frame: &Frame, body: &'a [u8]) -> Result<Connect<'a>, ConnectError> {
    if frame.kind() != CONNECT || frame.flags() != 0 {
        return Err(PacketError::Malformed("the first packet must be CONNECT").into());
    }
    let mut r = Reader::new(body);
    let name = r.str()?;
    let level = r.u8()?;
    if name != "MQTT" || level != 4 {
        return Err(ConnectError::Protocol(format!(
            "protocol {name:?} level {level}: only MQTT 3.1.1 (level 4) is served"
        )));
    }
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(PacketError::Malformed("CONNECT reserved flag set").into());
    }
    let will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if will_qos == 3 || (!will && (will_qos != 0 || will_retain)) {
        return Err(PacketError::Malformed("CONNECT will flags").into());
    }
    if has_password && !has_username {
        return Err(PacketError::Malformed("a password without a user name").into());
    }
    let _keep_alive = r.u16()?;
    let client_id = r.str()?;
    let will_topic = if will {
        let topic = r.str()?;
        let _message = r.bytes()?;
        Some(topic)
    } else {
        None
    };
    let username = if has_username { Some(r.str()?) } else { None };
    let password = if has_password { Some(r.bytes()?) } else { None };
    r.end()?;
    Ok(Connect {
        client_id,
        will_topic,
        username,
        password,
    })
}

/// The topic of a PUBLISH.
///
/// # Errors
/// QoS 3, or a body that does not hold a topic (and a packet id for QoS 1 and 2).
pub fn publish_topic<'a>(frame: &Frame, body: &'a [u8]) -> Result<&'a str, PacketError> {
    let qos = (frame.flags() >> 1) & 0x03;
    if qos == 3 {
        return Err(PacketError::Malformed("PUBLISH with QoS 3"));
    }
    let mut r = Reader::new(body);
    let topic = r.str()?;
    if qos > 0 {
        r.u16()?;
    }
    Ok(topic)
}

/// A SUBSCRIBE's packet id and filters.
///
/// # Errors
/// Wrong fixed-header flags, no filters, a requested QoS over 2, or a malformed body.
pub fn parse_subscribe<'a>(
    frame: &Frame,
    body: &'a [u8],
) -> Result<(u16, Vec<&'a str>), PacketError> {
    if frame.flags() != 0x02 {
        return Err(PacketError::Malformed("SUBSCRIBE flags must be 0010"));
    }
    let mut r = Reader::new(body);
    let id = r.u16()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.str()?);
        if r.u8()? > 2 {
            return Err(PacketError::Malformed("SUBSCRIBE asks for QoS over 2"));
        }
    }
    if filters.is_empty() {
        return Err(PacketError::Malformed("SUBSCRIBE without a filter"));
    }
    Ok((id, filters))
}

/// An UNSUBSCRIBE's packet id and filters.
///
/// # Errors
/// Wrong fixed-header flags, no filters, or a malformed body.
pub fn parse_unsubscribe<'a>(
    frame: &Frame,
    body: &'a [u8],
) -> Result<(u16, Vec<&'a str>), PacketError> {
    if frame.flags() != 0x02 {
        return Err(PacketError::Malformed("UNSUBSCRIBE flags must be 0010"));
    }
    let mut r = Reader::new(body);
    let id = r.u16()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.str()?);
    }
    if filters.is_empty() {
        return Err(PacketError::Malformed("UNSUBSCRIBE without a filter"));
    }
    Ok((id, filters))
}

/// A CONNACK with `code` (no session present).
pub fn connack(code: u8) -> [u8; 4] {
    [CONNACK << 4, 2, 0, code]
}

/// A SUBACK refusing `count` filters of subscription `id`.
pub fn suback_failure(id: u16, count: usize) -> Vec<u8> {
    let mut out = vec![SUBACK << 4];
    let mut remaining = 2 + count;
    loop {
        let mut byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if remaining == 0 {
            break;
        }
    }
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(std::iter::repeat_n(SUBACK_FAILURE, count));
    out
}

/// A bounds-checked cursor over a packet body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if self.buf.len() < n {
            return Err(PacketError::Malformed("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PacketError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], PacketError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    /// An MQTT UTF-8 string: valid UTF-8 without U+0000 (3.1.1, 1.5.3).
    fn str(&mut self) -> Result<&'a str, PacketError> {
        let s = std::str::from_utf8(self.bytes()?)
            .map_err(|_| PacketError::Malformed("a string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(PacketError::Malformed("a string holds U+0000"));
        }
        Ok(s)
    }

    fn end(&self) -> Result<(), PacketError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(PacketError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker_front::tests::{packet, string};

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() as usize) % (max + 1);
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn connect_body(will: Option<&str>, user: Option<&str>, password: Option<&[u8]>) -> Vec<u8> {
        let mut body = string(b"MQTT");
        body.push(4);
        let mut flags = 0x02;
        if will.is_some() {
            flags |= 0x04 | 0x08 | 0x20;
        }
        if user.is_some() {
            flags |= 0x80;
        }
        if password.is_some() {
            flags |= 0x40;
        }
        body.push(flags);
        body.extend_from_slice(&60u16.to_be_bytes());
        body.extend(string(b"client-1"));
        if let Some(topic) = will {
            body.extend(string(topic.as_bytes()));
            body.extend(string(b"offline"));
        }
        if let Some(user) = user {
            body.extend(string(user.as_bytes()));
        }
        if let Some(password) = password {
            body.extend((password.len() as u16).to_be_bytes());
            body.extend_from_slice(password);
        }
        body
    }

    fn framed(bytes: &[u8]) -> (Frame, &[u8]) {
        let f = frame(bytes, 1 << 20).unwrap().unwrap();
        (f, &bytes[f.header_len..f.total_len()])
    }

    #[test]
    fn a_connect_parses_with_its_will_and_login() {
        let bytes = packet(
            0x10,
            &connect_body(Some("p/ws/dev/cam/status"), Some("cam@ws"), Some(b"pw")),
        );
        let (f, body) = framed(&bytes);
        assert_eq!(
            parse_connect(&f, body).unwrap(),
            Connect {
                client_id: "client-1",
                will_topic: Some("p/ws/dev/cam/status"),
                username: Some("cam@ws"),
                password: Some(b"pw".as_slice()),
            }
        );
        let bytes = packet(0x10, &connect_body(None, None, None));
        let (f, body) = framed(&bytes);
        let c = parse_connect(&f, body).unwrap();
        assert_eq!((c.username, c.will_topic), (None, None));
    }

    #[test]
    fn connects_of_other_versions_or_shapes_are_refused() {
        let mut v5 = connect_body(None, Some("u"), None);
        v5[6] = 5;
        let bytes = packet(0x10, &v5);
        let (f, body) = framed(&bytes);
        assert!(matches!(
            parse_connect(&f, body),
            Err(ConnectError::Protocol(_))
        ));

        let mut trailing = connect_body(None, Some("u"), None);
        trailing.push(0);
        let bytes = packet(0x10, &trailing);
        let (f, body) = framed(&bytes);
        assert!(matches!(
            parse_connect(&f, body),
            Err(ConnectError::Packet(_))
        ));

        let bytes = packet(0x30, &string(b"a/b"));
        let (f, body) = framed(&bytes);
        assert!(
            parse_connect(&f, body).is_err(),
            "a PUBLISH is not a CONNECT"
        );
    }

    #[test]
    fn publish_subscribe_and_unsubscribe_parse() {
        let mut body = string(b"a/b");
        body.extend(7u16.to_be_bytes());
        body.extend_from_slice(b"payload");
        let bytes = packet(0x32, &body);
        let (f, b) = framed(&bytes);
        assert_eq!(publish_topic(&f, b).unwrap(), "a/b");
        assert!(
            publish_topic(&Frame { first: 0x36, ..f }, b).is_err(),
            "QoS 3"
        );

        let mut body = 9u16.to_be_bytes().to_vec();
        body.extend(string(b"a/#"));
        body.push(1);
        body.extend(string(b"c"));
        body.push(0);
        let bytes = packet(0x82, &body);
        let (f, b) = framed(&bytes);
        assert_eq!(parse_subscribe(&f, b).unwrap(), (9, vec!["a/#", "c"]));
        assert!(parse_subscribe(&Frame { first: 0x80, ..f }, b).is_err());

        let mut body = 3u16.to_be_bytes().to_vec();
        body.extend(string(b"a/#"));
        let bytes = packet(0xa2, &body);
        let (f, b) = framed(&bytes);
        assert_eq!(parse_unsubscribe(&f, b).unwrap(), (3, vec!["a/#"]));
    }

    #[test]
    fn framing_waits_for_bytes_and_refuses_giants_before_their_body() {
        assert_eq!(frame(&[], 100), Ok(None));
        assert_eq!(frame(&[0x30], 100), Ok(None));
        assert_eq!(frame(&[0x30, 0x80], 100), Ok(None));
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0x7f], 100),
            Err(PacketError::TooLarge {
                size: 268_435_455,
                max: 100
            })
        );
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 100),
            Err(PacketError::MalformedLength)
        );
        assert_eq!(
            frame(&[0xc0, 0x00], 100),
            Ok(Some(Frame {
                first: 0xc0,
                header_len: 2,
                body_len: 0
            }))
        );
    }

    #[test]
    fn a_suback_failure_is_a_valid_suback() {
        let bytes = suback_failure(0x1234, 3);
        assert_eq!(bytes, vec![0x90, 5, 0x12, 0x34, 0x80, 0x80, 0x80]);
        let big = suback_failure(1, 200);
        let (f, body) = framed(&big);
        assert_eq!((f.kind(), body.len()), (SUBACK, 202));
    }

    #[test]
    fn boundaries_follow_packets_split_anywhere() {
        let mut stream = Vec::new();
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            stream.extend(packet(0x30, &vec![7u8; n]));
        }
        for split in [1usize, 2, 3, 5, 64, 1000] {
            let mut b = Boundaries::default();
            let mut boundaries = 0;
            for chunk in stream.chunks(split) {
                for byte in chunk {
                    b.feed(std::slice::from_ref(byte)).unwrap();
                    boundaries += usize::from(b.at_boundary());
                }
            }
            assert_eq!(boundaries, 6, "split {split}");
            let mut whole = Boundaries::default();
            for chunk in stream.chunks(split) {
                whole.feed(chunk).unwrap();
            }
            assert!(whole.at_boundary());
        }
        let mut b = Boundaries::default();
        assert_eq!(
            b.feed(&[0x30, 0xff, 0xff, 0xff, 0xff]),
            Err(PacketError::MalformedLength)
        );
    }

    /// Random bytes, truncations and bit flips of valid packets: every parser answers, none
    /// panics.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let valid = [
            packet(0x10, &connect_body(Some("w/t"), Some("u@w"), Some(b"pw"))),
            packet(0x82, &[0, 1, 0, 1, b'#', 0]),
            packet(0xa2, &[0, 1, 0, 1, b'#']),
            packet(0x32, &[0, 1, b'a', 0, 1, 9, 9]),
        ];
        let check = |bytes: &[u8]| {
            let mut b = Boundaries::default();
            let _ = b.feed(bytes);
            if let Ok(Some(f)) = frame(bytes, 1 << 16) {
                let body = bytes
                    .get(f.header_len..f.total_len().min(bytes.len()))
                    .unwrap_or(&[]);
                let _ = parse_connect(&f, body);
                let _ = publish_topic(&f, body);
                let _ = parse_subscribe(&f, body);
                let _ = parse_unsubscribe(&f, body);
            }
            // The parsers take any body with any header, too.
            for first in [0x10, 0x30, 0x32, 0x36, 0x82, 0xa2] {
                let f = Frame {
                    first,
                    header_len: 2,
                    body_len: bytes.len(),
                };
                let _ = parse_connect(&f, bytes);
                let _ = publish_topic(&f, bytes);
                let _ = parse_subscribe(&f, bytes);
                let _ = parse_unsubscribe(&f, bytes);
            }
        };
        for _ in 0..20_000 {
            check(&rng.bytes(64));
        }
        for packet in &valid {
            for cut in 0..=packet.len() {
                check(&packet[..cut]);
            }
            for _ in 0..2_000 {
                let mut flipped = packet.clone();
                let i = rng.next() as usize % flipped.len();
                flipped[i] ^= 1 << (rng.next() % 8);
                check(&flipped);
            }
        }
    }
}
