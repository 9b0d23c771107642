//! Wire formats: BGP-4 messages (RFC 4271, with the RFC 4456 reflection attributes) and the
//! Ethernet II / IPv4 / TCP frames that carry them.
//!
//! Parsing takes untrusted bytes, checks every length before reading and returns a
//! [`WireError`] that knows which NOTIFICATION (error code, subcode) BGP answers it with;
//! nothing here panics on input. Emitting is the exact inverse for every message this module can
//! represent: `parse(emit(m)) == m`.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netsim_core::checksum;
use netsim_core::packet::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, IP_PROTO_TCP};

/// The TCP port BGP listens on.
pub const BGP_PORT: u16 = 179;
/// Length of the common message header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// The largest message RFC 4271 allows.
pub const MESSAGE_LEN_MAX: usize = 4096;
/// The largest UPDATE this speaker builds: RFC 4271's maximum. The transport cuts the byte
/// stream into segments of at most [`SEGMENT_LEN_MAX`] bytes, so a long UPDATE spans several.
pub const UPDATE_LEN_MAX: usize = MESSAGE_LEN_MAX;
/// The most BGP bytes one TCP segment carries (the MSS the transport uses): a segment fits any
/// underlay MTU of 1440 bytes or more. A segment carries as many messages as fit.
pub const SEGMENT_LEN_MAX: usize = 1400;
/// LOCAL_PREF of locally originated routes (BIRD's and RFC 4271's customary default).
pub const LOCAL_PREF_DEFAULT: u32 = 100;

const VERSION: u8 = 4;
const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_ATOMIC_AGGREGATE: u8 = 6;
const ATTR_ORIGINATOR_ID: u8 = 9;
const ATTR_CLUSTER_LIST: u8 = 10;
const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED: u8 = 0x10;
const AS_SEQUENCE: u8 = 2;

/// One BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Opens a session: who the sender is and how long it waits for the next message.
    Open(Open),
    /// Announces and withdraws routes.
    Update(Update),
    /// Reports an error; the sender closes the session right after.
    Notification(Notification),
    /// Proves the sender is alive, and confirms an OPEN.
    Keepalive,
}

/// The body of an OPEN (version 4, no optional parameters are sent; received ones are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The sender's autonomous system (2-byte ASN).
    pub asn: u16,
    /// The hold time the sender proposes, in seconds (0, or at least 3).
    pub hold_time_secs: u16,
    /// The BGP identifier: the sender's router id.
    pub router_id: Ipv4Addr,
}

/// The body of an UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Prefixes no longer reachable through the sender.
    pub withdrawn: Vec<Ipv4Net>,
    /// The path of `nlri`; `None` exactly when `nlri` is empty (attributes of an UPDATE without
    /// NLRI are ignored on receipt).
    pub attributes: Option<PathAttributes>,
    /// Prefixes reachable along `attributes`.
    pub nlri: Vec<Ipv4Net>,
}

/// ORIGIN: how the originating speaker learned the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Interior to the originating AS (what Calico announces).
    Igp,
    /// Learned by EGP.
    Egp,
    /// Learned some other way (redistribution).
    Incomplete,
}

/// The path attributes this speaker understands; other optional attributes are skipped on
/// receipt, unknown well-known attributes are an error (RFC 4271 section 6.3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathAttributes {
    /// ORIGIN (type 1).
    pub origin: Origin,
    /// AS_PATH (type 2) as one AS_SEQUENCE; empty inside one AS (iBGP). AS_SET segments are not
    /// supported and rejected as a malformed AS_PATH.
    pub as_path: Vec<u16>,
    /// NEXT_HOP (type 3): the host to forward to; unchanged by iBGP and by reflection.
    pub next_hop: Ipv4Addr,
    /// LOCAL_PREF (type 5), mandatory between iBGP peers.
    pub local_pref: Option<u32>,
    /// ORIGINATOR_ID (type 9, RFC 4456): the router id of the route's first iBGP speaker.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (type 10, RFC 4456): the clusters the route was reflected through, latest
    /// first.
    pub cluster_list: Vec<Ipv4Addr>,
}

/// The body of a NOTIFICATION.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Error code (RFC 4271 section 4.5), e.g. 4 for "hold timer expired".
    pub code: u8,
    /// Error subcode, 0 when unspecific.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

impl Notification {
    /// Error code 4: no message arrived within the hold time.
    pub const HOLD_TIMER_EXPIRED: (u8, u8) = (4, 0);
    /// Error code 5: a message that the session's state does not allow.
    pub const FSM_ERROR: (u8, u8) = (5, 0);
    /// Cease / Peer De-configured (RFC 4486): the peer was removed from the configuration.
    pub const PEER_DECONFIGURED: (u8, u8) = (6, 3);

    /// A notification with no diagnostic data.
    pub fn new((code, subcode): (u8, u8)) -> Self {
        Notification { code, subcode, data: Vec::new() }
    }
}

/// Why bytes are not a valid BGP message. Each maps to the NOTIFICATION that reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The 16-byte marker is not all ones ("connection not synchronized").
    #[error("bad marker")]
    BadMarker,
    /// The length field is out of range or inconsistent with the message's contents.
    #[error("bad message length {0}")]
    BadLength(u16),
    /// An unknown message type.
    #[error("bad message type {0}")]
    BadType(u8),
    /// An OPEN with a version other than 4.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Attribute or withdrawn-routes lengths that do not add up, or a repeated attribute.
    #[error("malformed attribute list")]
    MalformedAttributeList,
    /// A well-known attribute this speaker does not know.
    #[error("unrecognized well-known attribute {0}")]
    UnrecognizedWellKnown(u8),
    /// A mandatory attribute is missing from an UPDATE carrying NLRI.
    #[error("missing well-known attribute {0}")]
    MissingWellKnown(u8),
    /// An attribute with the wrong optional/transitive flags.
    #[error("attribute flags error for type {0}")]
    AttributeFlags(u8),
    /// An attribute with the wrong length.
    #[error("attribute length error for type {0}")]
    AttributeLength(u8),
    /// ORIGIN with a value other than 0, 1, 2.
    #[error("invalid origin {0}")]
    InvalidOrigin(u8),
    /// An AS_PATH that is truncated or holds an AS_SET.
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    /// A prefix longer than 32 bits or cut short.
    #[error("invalid network field")]
    InvalidNetwork,
}

impl WireError {
    /// The NOTIFICATION RFC 4271 section 6 prescribes for this error.
    pub fn notification(&self) -> Notification {
        let (code, subcode, data) = match *self {
            WireError::BadMarker => (1, 1, Vec::new()),
            WireError::BadLength(len) => (1, 2, len.to_be_bytes().to_vec()),
            WireError::BadType(kind) => (1, 3, vec![kind]),
            WireError::UnsupportedVersion(_) => (2, 1, u16::from(VERSION).to_be_bytes().to_vec()),
            WireError::MalformedAttributeList => (3, 1, Vec::new()),
            WireError::UnrecognizedWellKnown(kind) => (3, 2, vec![kind]),
            WireError::MissingWellKnown(kind) => (3, 3, vec![kind]),
            WireError::AttributeFlags(kind) => (3, 4, vec![kind]),
            WireError::AttributeLength(kind) => (3, 5, vec![kind]),
            WireError::InvalidOrigin(value) => (3, 6, vec![value]),
            WireError::MalformedAsPath => (3, 11, Vec::new()),
            WireError::InvalidNetwork => (3, 10, Vec::new()),
        };
        Notification { code, subcode, data }
    }
}

/// A bounds-checked reader over a message body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, error: WireError) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(error);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self, error: WireError) -> Result<u8, WireError> {
        Ok(self.take(1, error)?[0])
    }
    fn u16(&mut self, error: WireError) -> Result<u16, WireError> {
        let b = self.take(2, error)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn addr(&mut self, error: WireError) -> Result<Ipv4Addr, WireError> {
        let b = self.take(4, error)?;
        Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// A message borrowed from the bytes it was read from: what a session handles, without copying
/// an UPDATE's prefixes or attributes. [`MessageView::to_owned`] gives the [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageView<'a> {
    /// An OPEN.
    Open(Open),
    /// An UPDATE, validated.
    Update(UpdateView<'a>),
    /// A NOTIFICATION.
    Notification(Notification),
    /// A KEEPALIVE.
    Keepalive,
}

/// A validated UPDATE over its bytes: every prefix and attribute was checked when it was parsed,
/// so reading it cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateView<'a> {
    withdrawn: &'a [u8],
    /// The path of the NLRI; `None` exactly when there is no NLRI.
    pub attributes: Option<AttributesView<'a>>,
    nlri: &'a [u8],
}

/// Validated path attributes over their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttributesView<'a> {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH: AS_SEQUENCE segments, each checked.
    as_path: &'a [u8],
    /// NEXT_HOP.
    pub next_hop: Ipv4Addr,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ORIGINATOR_ID.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST: a multiple of 4 bytes.
    cluster_list: &'a [u8],
}

/// The prefixes of a validated withdrawn-routes or NLRI field, in order.
#[derive(Clone, Debug)]
pub struct Prefixes<'a> {
    bytes: &'a [u8],
}

impl Iterator for Prefixes<'_> {
    type Item = Ipv4Net;

    fn next(&mut self) -> Option<Ipv4Net> {
        let (&len, rest) = self.bytes.split_first()?;
        // Validated when the UPDATE was parsed: len <= 32 and its octets are present.
        let n = usize::from(len).div_ceil(8);
        let mut addr = [0u8; 4];
        addr[..n].copy_from_slice(&rest[..n]);
        self.bytes = &rest[n..];
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len).expect("prefix length validated");
        Some(net.trunc())
    }
}

impl<'a> UpdateView<'a> {
    /// The withdrawn routes.
    pub fn withdrawn(&self) -> Prefixes<'a> {
        Prefixes { bytes: self.withdrawn }
    }

    /// The announced prefixes (NLRI).
    pub fn nlri(&self) -> Prefixes<'a> {
        Prefixes { bytes: self.nlri }
    }

    /// The owned UPDATE.
    pub fn to_owned(&self) -> Update {
        Update {
            withdrawn: self.withdrawn().collect(),
            attributes: self.attributes.as_ref().map(AttributesView::to_owned),
            nlri: self.nlri().collect(),
        }
    }
}

impl<'a> AttributesView<'a> {
    /// The AS numbers of the AS_PATH, in order.
    pub fn as_path(&self) -> impl Iterator<Item = u16> + 'a {
        let mut bytes = self.as_path;
        std::iter::from_fn(move || {
            // Validated: each segment is (type, count >= 1, 2 * count bytes).
            let (&count, rest) = bytes.get(1..)?.split_first()?;
            let (asns, rest) = rest.split_at(2 * usize::from(count));
            bytes = rest;
            Some(asns.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])))
        })
        .flatten()
    }

    /// The CLUSTER_LIST's cluster ids, latest first.
    pub fn cluster_list(&self) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.cluster_list.chunks_exact(4).map(|v| Ipv4Addr::new(v[0], v[1], v[2], v[3]))
    }

    /// The owned attributes.
    pub fn to_owned(&self) -> PathAttributes {
        PathAttributes {
            origin: self.origin,
            as_path: self.as_path().collect(),
            next_hop: self.next_hop,
            local_pref: self.local_pref,
            originator_id: self.originator_id,
            cluster_list: self.cluster_list().collect(),
        }
    }
}

impl<'a> MessageView<'a> {
    /// Parses the first message of `stream`: `Ok(None)` if more bytes are needed, else the
    /// message and how many bytes it took. A header error leaves the stream unusable (BGP closes
    /// the session); a body error comes after the length was checked.
    pub fn parse(stream: &'a [u8]) -> Result<Option<(MessageView<'a>, usize)>, WireError> {
        let Some(header) = stream.get(..HEADER_LEN) else { return Ok(None) };
        if header[..16].iter().any(|&b| b != 0xff) {
            return Err(WireError::BadMarker);
        }
        let len16 = u16::from_be_bytes([header[16], header[17]]);
        let len = usize::from(len16);
        let kind = header[18];
        let min = match kind {
            TYPE_OPEN => 29,
            TYPE_UPDATE => 23,
            TYPE_NOTIFICATION => 21,
            TYPE_KEEPALIVE => HEADER_LEN,
            _ => return Err(WireError::BadType(kind)),
        };
        if !(min..=MESSAGE_LEN_MAX).contains(&len) || (kind == TYPE_KEEPALIVE && len != HEADER_LEN) {
            return Err(WireError::BadLength(len16));
        }
        let Some(body) = stream.get(HEADER_LEN..len) else { return Ok(None) };
        let mut r = Reader { bytes: body };
        let message = match kind {
            TYPE_OPEN => MessageView::Open(parse_open(&mut r, len16)?),
            TYPE_UPDATE => MessageView::Update(parse_update(&mut r)?),
            TYPE_NOTIFICATION => {
                let bad = WireError::BadLength(len16);
                let code = r.u8(bad.clone())?;
                let subcode = r.u8(bad)?;
                MessageView::Notification(Notification { code, subcode, data: r.bytes.to_vec() })
            }
            _ => MessageView::Keepalive,
        };
        Ok(Some((message, len)))
    }

    /// The owned message.
    pub fn to_owned(&self) -> Message {
        match self {
            MessageView::Open(open) => Message::Open(open.clone()),
            MessageView::Update(update) => Message::Update(update.to_owned()),
            MessageView::Notification(n) => Message::Notification(n.clone()),
            MessageView::Keepalive => Message::Keepalive,
        }
    }
}

impl Message {
    /// Parses the first message of `stream`, as [`MessageView::parse`] does, into an owned
    /// message.
    pub fn parse(stream: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
        Ok(MessageView::parse(stream)?.map(|(view, len)| (view.to_owned(), len)))
    }

    /// The message's bytes, header included.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit_into(&mut out);
        out
    }

    /// Appends the message's bytes to `out`.
    pub fn emit_into(&self, out: &mut Vec<u8>) {
        match self {
            Message::Update(update) => {
                let attributes = update.attributes.as_ref().map(encode_attributes).unwrap_or_default();
                write_update(out, update.withdrawn.iter().copied(), &attributes, update.nlri.iter().copied());
                return;
            }
            Message::Open(_) | Message::Notification(_) | Message::Keepalive => {}
        }
        let start = out.len();
        out.extend_from_slice(&[0xff; 16]);
        out.extend_from_slice(&[0, 0, self.type_code()]);
        match self {
            Message::Open(open) => {
                out.push(VERSION);
                out.extend_from_slice(&open.asn.to_be_bytes());
                out.extend_from_slice(&open.hold_time_secs.to_be_bytes());
                out.extend_from_slice(&open.router_id.octets());
                out.push(0); // no optional parameters
            }
            Message::Notification(n) => {
                out.extend_from_slice(&[n.code, n.subcode]);
                out.extend_from_slice(&n.data);
            }
            Message::Update(_) | Message::Keepalive => {}
        }
        finish_message(out, start);
    }

    fn type_code(&self) -> u8 {
        match self {
            Message::Open(_) => TYPE_OPEN,
            Message::Update(_) => TYPE_UPDATE,
            Message::Notification(_) => TYPE_NOTIFICATION,
            Message::Keepalive => TYPE_KEEPALIVE,
        }
    }
}

/// Writes the length of the message that starts at `start` and ends `out`.
fn finish_message(out: &mut [u8], start: usize) {
    let len = out.len() - start;
    debug_assert!(len <= MESSAGE_LEN_MAX, "message of {len} bytes");
    out[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
}

/// Appends one UPDATE: `withdrawn`, then the path attributes already encoded (empty when there
/// is no NLRI) and the NLRI. The caller keeps it within [`UPDATE_LEN_MAX`] bytes: 23 bytes,
/// plus the attributes, plus [`prefix_len_bytes`] per prefix.
pub fn write_update(
    out: &mut Vec<u8>,
    withdrawn: impl IntoIterator<Item = Ipv4Net>,
    attributes: &[u8],
    nlri: impl IntoIterator<Item = Ipv4Net>,
) {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, TYPE_UPDATE, 0, 0]);
    for p in withdrawn {
        push_prefix(out, p);
    }
    let withdrawn_len = (out.len() - start - HEADER_LEN - 2) as u16;
    out[start + HEADER_LEN..start + HEADER_LEN + 2].copy_from_slice(&withdrawn_len.to_be_bytes());
    out.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    out.extend_from_slice(attributes);
    for p in nlri {
        push_prefix(out, p);
    }
    finish_message(out, start);
}

/// The bytes of an UPDATE besides its attributes and prefixes: header and two length fields.
pub const UPDATE_FIXED_LEN: usize = HEADER_LEN + 4;

impl fmt::Display for Message {
    /// One line, tcpdump style: `OPEN as 64512 hold 3 id 10.0.0.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Open(o) => write!(f, "OPEN as {} hold {} id {}", o.asn, o.hold_time_secs, o.router_id),
            Message::Update(u) => {
                write!(f, "UPDATE withdrawn {} nlri {}", u.withdrawn.len(), u.nlri.len())?;
                if let Some(a) = &u.attributes {
                    write!(f, " next-hop {}", a.next_hop)?;
                }
                Ok(())
            }
            Message::Notification(n) => write!(f, "NOTIFICATION {}/{}", n.code, n.subcode),
            Message::Keepalive => write!(f, "KEEPALIVE"),
        }
    }
}

fn parse_open(r: &mut Reader<'_>, len: u16) -> Result<Open, WireError> {
    let bad = || WireError::BadLength(len);
    let version = r.u8(bad())?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let asn = r.u16(bad())?;
    let hold_time_secs = r.u16(bad())?;
    let router_id = r.addr(bad())?;
    let params_len = usize::from(r.u8(bad())?);
    if params_len != r.bytes.len() {
        return Err(bad());
    }
    // Optional parameters (capabilities) are skipped, but must be well formed.
    while !r.bytes.is_empty() {
        let _kind = r.u8(bad())?;
        let n = usize::from(r.u8(bad())?);
        r.take(n, bad())?;
    }
    Ok(Open { asn, hold_time_secs, router_id })
}

fn parse_update<'a>(r: &mut Reader<'a>) -> Result<UpdateView<'a>, WireError> {
    let malformed = || WireError::MalformedAttributeList;
    let withdrawn_len = usize::from(r.u16(malformed())?);
    let withdrawn = r.take(withdrawn_len, malformed())?;
    check_prefixes(withdrawn)?;
    let attributes_len = usize::from(r.u16(malformed())?);
    let attribute_bytes = r.take(attributes_len, malformed())?;
    let nlri = r.bytes;
    check_prefixes(nlri)?;
    let attributes = parse_attributes(attribute_bytes, !nlri.is_empty())?;
    Ok(UpdateView { withdrawn, attributes, nlri })
}

/// Parses the path attributes; they are required (and returned) only when the UPDATE has NLRI.
fn parse_attributes(bytes: &[u8], needed: bool) -> Result<Option<AttributesView<'_>>, WireError> {
    let mut r = Reader { bytes };
    let mut seen = [false; 256];
    let mut origin = None;
    let mut as_path = None;
    let mut next_hop = None;
    let mut local_pref = None;
    let mut originator_id = None;
    let mut cluster_list: &[u8] = &[];
    while !r.bytes.is_empty() {
        let malformed = || WireError::MalformedAttributeList;
        let flags = r.u8(malformed())?;
        let kind = r.u8(malformed())?;
        let len = if flags & FLAG_EXTENDED != 0 {
            usize::from(r.u16(malformed())?)
        } else {
            usize::from(r.u8(malformed())?)
        };
        let value = r.take(len, WireError::AttributeLength(kind))?;
        if std::mem::replace(&mut seen[usize::from(kind)], true) {
            return Err(malformed());
        }
        let well_known = matches!(
            kind,
            ATTR_ORIGIN | ATTR_AS_PATH | ATTR_NEXT_HOP | ATTR_LOCAL_PREF | ATTR_ATOMIC_AGGREGATE
        );
        let reflection = matches!(kind, ATTR_ORIGINATOR_ID | ATTR_CLUSTER_LIST);
        let class = flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE);
        if (well_known && class != FLAG_TRANSITIVE) || (reflection && class != FLAG_OPTIONAL) {
            return Err(WireError::AttributeFlags(kind));
        }
        let exact = |n: usize| if value.len() == n { Ok(()) } else { Err(WireError::AttributeLength(kind)) };
        let addr = |v: &[u8]| Ipv4Addr::new(v[0], v[1], v[2], v[3]);
        match kind {
            ATTR_ORIGIN => {
                exact(1)?;
                origin = Some(match value[0] {
                    0 => Origin::Igp,
                    1 => Origin::Egp,
                    2 => Origin::Incomplete,
                    other => return Err(WireError::InvalidOrigin(other)),
                });
            }
            ATTR_AS_PATH => {
                check_as_path(value)?;
                as_path = Some(value);
            }
            ATTR_NEXT_HOP => {
                exact(4)?;
                next_hop = Some(addr(value));
            }
            ATTR_LOCAL_PREF => {
                exact(4)?;
                local_pref = Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]));
            }
            ATTR_ATOMIC_AGGREGATE => exact(0)?,
            ATTR_ORIGINATOR_ID => {
                exact(4)?;
                originator_id = Some(addr(value));
            }
            ATTR_CLUSTER_LIST => {
                if value.len() % 4 != 0 {
                    return Err(WireError::AttributeLength(kind));
                }
                cluster_list = value;
            }
            _ if flags & FLAG_OPTIONAL == 0 => return Err(WireError::UnrecognizedWellKnown(kind)),
            _ => {} // an optional attribute we do not use (MED, AGGREGATOR, communities...)
        }
    }
    if !needed {
        return Ok(None);
    }
    let origin = origin.ok_or(WireError::MissingWellKnown(ATTR_ORIGIN))?;
    let as_path = as_path.ok_or(WireError::MissingWellKnown(ATTR_AS_PATH))?;
    let next_hop = next_hop.ok_or(WireError::MissingWellKnown(ATTR_NEXT_HOP))?;
    Ok(Some(AttributesView { origin, as_path, next_hop, local_pref, originator_id, cluster_list }))
}

/// Checks an AS_PATH: AS_SEQUENCE segments of at least one AS each.
fn check_as_path(bytes: &[u8]) -> Result<(), WireError> {
    let mut r = Reader { bytes };
    while !r.bytes.is_empty() {
        let kind = r.u8(WireError::MalformedAsPath)?;
        let count = usize::from(r.u8(WireError::MalformedAsPath)?);
        if kind != AS_SEQUENCE || count == 0 {
            return Err(WireError::MalformedAsPath);
        }
        r.take(2 * count, WireError::MalformedAsPath)?;
    }
    Ok(())
}

/// Checks a withdrawn-routes or NLRI field: prefixes of at most 32 bits, none cut short.
fn check_prefixes(bytes: &[u8]) -> Result<(), WireError> {
    let mut r = Reader { bytes };
    while !r.bytes.is_empty() {
        let len = r.u8(WireError::InvalidNetwork)?;
        if len > 32 {
            return Err(WireError::InvalidNetwork);
        }
        r.take(usize::from(len).div_ceil(8), WireError::InvalidNetwork)?;
    }
    Ok(())
}

/// Encoded size of one prefix: its length byte and the octets that hold its bits.
pub fn prefix_len_bytes(prefix: &Ipv4Net) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

fn push_prefix(out: &mut Vec<u8>, p: Ipv4Net) {
    out.push(p.prefix_len());
    out.extend_from_slice(&p.network().octets()[..prefix_len_bytes(&p) - 1]);
}

fn push_attribute(out: &mut Vec<u8>, flags: u8, kind: u8, value: &[u8]) {
    if value.len() > 255 {
        out.extend_from_slice(&[flags | FLAG_EXTENDED, kind]);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags, kind, value.len() as u8]);
    }
    out.extend_from_slice(value);
}

/// The path attributes' bytes in type-code order, as RFC 4271 recommends.
pub fn encode_attributes(a: &PathAttributes) -> Vec<u8> {
    let mut out = Vec::new();
    let origin = match a.origin {
        Origin::Igp => 0,
        Origin::Egp => 1,
        Origin::Incomplete => 2,
    };
    push_attribute(&mut out, FLAG_TRANSITIVE, ATTR_ORIGIN, &[origin]);
    let mut path = Vec::new();
    for segment in a.as_path.chunks(255) {
        path.extend_from_slice(&[AS_SEQUENCE, segment.len() as u8]);
        path.extend(segment.iter().flat_map(|asn| asn.to_be_bytes()));
    }
    push_attribute(&mut out, FLAG_TRANSITIVE, ATTR_AS_PATH, &path);
    push_attribute(&mut out, FLAG_TRANSITIVE, ATTR_NEXT_HOP, &a.next_hop.octets());
    if let Some(pref) = a.local_pref {
        push_attribute(&mut out, FLAG_TRANSITIVE, ATTR_LOCAL_PREF, &pref.to_be_bytes());
    }
    if let Some(id) = a.originator_id {
        push_attribute(&mut out, FLAG_OPTIONAL, ATTR_ORIGINATOR_ID, &id.octets());
    }
    if !a.cluster_list.is_empty() {
        let list: Vec<u8> = a.cluster_list.iter().flat_map(|id| id.octets()).collect();
        push_attribute(&mut out, FLAG_OPTIONAL, ATTR_CLUSTER_LIST, &list);
    }
    out
}

/// TCP flag bits, as in the header.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers (connection setup).
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push the data to the application.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
}

/// The TCP header fields the transport uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    /// Next sequence number expected from the other side (valid with [`flags::ACK`]).
    pub ack: u32,
    /// [`flags`] bits.
    pub flags: u8,
    /// The receive window the sender advertises, in bytes.
    pub window: u16,
}

impl Segment {
    /// Whether all bits of `flag` are set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag == flag
    }
}

/// Why a frame is not a well-formed Ethernet II / IPv4 / TCP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Too short, or a header length field that points past the end.
    #[error("truncated or inconsistent headers")]
    Truncated,
    /// Not IPv4, or an IPv4 fragment.
    #[error("not an unfragmented IPv4 packet")]
    NotIpv4,
    /// Not TCP.
    #[error("not TCP")]
    NotTcp,
    /// The IPv4 header or TCP checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
}

/// A frame's addresses, TCP header and payload.
#[derive(Clone, Copy, Debug)]
pub struct TcpFrame<'a> {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// TCP header fields.
    pub segment: Segment,
    /// TCP payload.
    pub payload: &'a [u8],
}

const IPV4_LEN: usize = 20;
const TCP_LEN: usize = 20;

/// Builds an Ethernet II / IPv4 / TCP frame; the destination MAC is zero (the fabric rewrites
/// MACs hop by hop). IPv4 with don't-fragment, TTL 64, identification 0; TCP without options.
pub fn build_frame(mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, s: &Segment, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + IPV4_LEN + TCP_LEN + payload.len());
    build_frame_into(&mut frame, mac, src, dst, s, payload);
    frame
}

/// [`build_frame`] into a buffer (cleared first), so that a caller can reuse one.
pub fn build_frame_into(
    frame: &mut Vec<u8>,
    mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    s: &Segment,
    payload: &[u8],
) {
    // Written by hand rather than with etherparse's builder, whose by-value steps copy the
    // whole builder at each step (byte-identical output, see the tests).
    let headers = ETHERNET_HEADER_LEN + IPV4_LEN + TCP_LEN;
    frame.clear();
    frame.reserve(headers + payload.len());
    frame.resize(headers, 0);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = ETHERNET_HEADER_LEN;
    // Payloads are bounded by a segment or a message, far below the IPv4 limit.
    let ip_len = (IPV4_LEN + TCP_LEN + payload.len()) as u16;
    frame[ip] = 0x45;
    frame[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
    frame[ip + 6] = 0x40; // don't fragment
    frame[ip + 8] = 64;
    frame[ip + 9] = IP_PROTO_TCP;
    frame[ip + 12..ip + 16].copy_from_slice(&src.octets());
    frame[ip + 16..ip + 20].copy_from_slice(&dst.octets());
    let ip_checksum = checksum::finish(checksum::ones_complement_sum(&frame[ip..ip + IPV4_LEN]));
    frame[ip + 10..ip + 12].copy_from_slice(&ip_checksum.to_be_bytes());
    let tcp = ip + IPV4_LEN;
    frame[tcp..tcp + 2].copy_from_slice(&s.src_port.to_be_bytes());
    frame[tcp + 2..tcp + 4].copy_from_slice(&s.dst_port.to_be_bytes());
    frame[tcp + 4..tcp + 8].copy_from_slice(&s.seq.to_be_bytes());
    let ack = if s.has(flags::ACK) { s.ack } else { 0 };
    frame[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
    frame[tcp + 12] = 5 << 4;
    frame[tcp + 13] = s.flags;
    frame[tcp + 14..tcp + 16].copy_from_slice(&s.window.to_be_bytes());
    frame.extend_from_slice(payload);
    let tcp_len = (TCP_LEN + payload.len()) as u64;
    let pseudo = checksum::sum_words(&frame[ip + 12..ip + 20], u64::from(IP_PROTO_TCP) + tcp_len);
    let sum = checksum::finish(checksum::fold(checksum::sum_words(&frame[tcp..], pseudo)));
    frame[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
}

/// Reads an Ethernet II / IPv4 / TCP frame, verifying both checksums.
pub fn parse_frame(frame: &[u8]) -> Result<TcpFrame<'_>, FrameError> {
    // Read by hand, every length checked before use (a test compares with etherparse).
    let ether_type = frame.get(12..ETHERNET_HEADER_LEN).ok_or(FrameError::Truncated)?;
    if ether_type != ETHERTYPE_IPV4.to_be_bytes() {
        return Err(FrameError::NotIpv4);
    }
    let ip = &frame[ETHERNET_HEADER_LEN..];
    if ip.len() < IPV4_LEN || ip[0] >> 4 != 4 {
        return Err(FrameError::Truncated);
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if header_len < IPV4_LEN || total_len < header_len || total_len > ip.len() {
        return Err(FrameError::Truncated);
    }
    let more_fragments = ip[6] & 0x20 != 0;
    let offset = u16::from_be_bytes([ip[6] & 0x1f, ip[7]]);
    if more_fragments || offset != 0 {
        return Err(FrameError::NotIpv4);
    }
    if ip[9] != IP_PROTO_TCP {
        return Err(FrameError::NotTcp);
    }
    if checksum::ones_complement_sum(&ip[..header_len]) != 0xffff {
        return Err(FrameError::BadChecksum);
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tcp = &ip[header_len..total_len];
    if tcp.len() < TCP_LEN {
        return Err(FrameError::Truncated);
    }
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset < TCP_LEN || data_offset > tcp.len() {
        return Err(FrameError::Truncated);
    }
    let pseudo = checksum::sum_words(&ip[12..20], u64::from(IP_PROTO_TCP) + tcp.len() as u64);
    if checksum::fold(checksum::sum_words(tcp, pseudo)) != 0xffff {
        return Err(FrameError::BadChecksum);
    }
    let u16_at = |i: usize| u16::from_be_bytes([tcp[i], tcp[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([tcp[i], tcp[i + 1], tcp[i + 2], tcp[i + 3]]);
    let segment = Segment {
        src_port: u16_at(0),
        dst_port: u16_at(2),
        seq: u32_at(4),
        ack: u32_at(8),
        flags: tcp[13] & (flags::FIN | flags::SYN | flags::RST | flags::PSH | flags::ACK),
        window: u16_at(14),
    };
    Ok(TcpFrame { src, dst, segment, payload: &tcp[data_offset..] })
}
