//! Human-readable quantities in scenario files: `"500ms"`, `"10Gbps"`, `"20000/s"`, `"1400B"`.
//!
//! Each quantity is a decimal number followed by a unit, parsed exactly with integer arithmetic
//! (no float rounding), so the same text always means the same nanoseconds or bits on every
//! machine. A bare number is rejected: a value without a unit is a common and silent mistake.

use std::fmt;

use netsim_core::SimDuration;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Parses `number * scale` exactly, where `number` is a non-negative decimal like `1.25`.
/// `None` if the text is not such a number, the product is not a whole number, or it overflows.
fn scaled_decimal(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) || fraction.len() > 18 {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut value = whole.checked_mul(scale)?;
    if !fraction.is_empty() {
        let denominator = 10u128.pow(fraction.len() as u32);
        let numerator: u128 = fraction.parse().ok()?;
        let product = numerator.checked_mul(scale)?;
        if product % denominator != 0 {
            return None;
        }
        value = value.checked_add(product / denominator)?;
    }
    Some(value)
}

/// Splits `"12.5ms"` into `("12.5", "ms")`, trimming spaces between the two.
fn split_unit(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

/// Parses `text` as a number and one of `units` (name, scale); the error says what is accepted.
fn parse_with_units(text: &str, units: &[(&str, u128)], what: &str, example: &str) -> Result<u128, String> {
    let (number, unit) = split_unit(text);
    let accepted = || units.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    if number.is_empty() {
        return Err(format!("{what} `{text}` must be a non-negative number and a unit, e.g. \"{example}\""));
    }
    if unit.is_empty() {
        return Err(format!("{what} `{text}` has no unit (write e.g. \"{example}\"; units: {})", accepted()));
    }
    let Some(&(_, scale)) = units.iter().find(|(name, _)| *name == unit) else {
        return Err(format!("{what} `{text}`: unknown unit `{unit}` (units: {})", accepted()));
    };
    scaled_decimal(number, scale)
        .ok_or_else(|| format!("{what} `{text}` is not a whole number of the smallest unit, or is out of range (e.g. \"{example}\")"))
}

/// Implements `Deserialize` from a string (rejecting numbers with a hint) and `Serialize` back.
macro_rules! quantity_serde {
    ($type:ident, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct QuantityVisitor;
                impl Visitor<'_> for QuantityVisitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, value: i64) -> Result<$type, E> {
                        Err(E::custom(format!("`{value}` has no unit: write {}", $expecting)))
                    }
                    fn visit_u64<E: de::Error>(self, value: u64) -> Result<$type, E> {
                        Err(E::custom(format!("`{value}` has no unit: write {}", $expecting)))
                    }
                    fn visit_f64<E: de::Error>(self, value: f64) -> Result<$type, E> {
                        Err(E::custom(format!("`{value}` has no unit: write {}", $expecting)))
                    }
                }
                deserializer.deserialize_any(QuantityVisitor)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

/// A span of time: `"250ns"`, `"10us"`, `"1.5ms"`, `"2s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub SimDuration);

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        const UNITS: [(&str, u128); 5] =
            [("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)];
        let ns = parse_with_units(text, &UNITS, "duration", "500ms")?;
        let ns = u64::try_from(ns).map_err(|_| format!("duration `{text}` is too long"))?;
        Ok(Duration(SimDuration::from_nanos(ns)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

quantity_serde!(Duration, "a duration such as \"500ms\"");

/// A line rate in bits per second: `"10Gbps"`, `"40Gb/s"`, `"100Mbps"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bandwidth(pub u64);

impl std::str::FromStr for Bandwidth {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        const UNITS: [(&str, u128); 10] = [
            ("bps", 1),
            ("kbps", 1_000),
            ("Mbps", 1_000_000),
            ("Gbps", 1_000_000_000),
            ("Tbps", 1_000_000_000_000),
            ("b/s", 1),
            ("kb/s", 1_000),
            ("Mb/s", 1_000_000),
            ("Gb/s", 1_000_000_000),
            ("Tb/s", 1_000_000_000_000),
        ];
        let bps = parse_with_units(text, &UNITS, "bandwidth", "10Gbps")?;
        u64::try_from(bps).map(Bandwidth).map_err(|_| format!("bandwidth `{text}` is too large"))
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (scale, unit) in
            [(1_000_000_000_000, "Tbps"), (1_000_000_000, "Gbps"), (1_000_000, "Mbps"), (1_000, "kbps")]
        {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}bps", self.0)
    }
}

quantity_serde!(Bandwidth, "a bandwidth such as \"10Gbps\"");

/// A packet rate, kept in packets per million seconds so that fractional rates stay exact:
/// `"20000/s"`, `"20k/s"`, `"1.5M/s"`, `"500pps"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PacketRate {
    /// Packets per 10^6 seconds.
    pub per_megasecond: u64,
}

impl PacketRate {
    /// Packets per second.
    pub fn per_second(self) -> f64 {
        self.per_megasecond as f64 / 1e6
    }

    /// The mean time between packets, in nanoseconds, rounded to the nearest; `None` for rate 0.
    pub fn interval_ns(self) -> Option<u64> {
        let rate = u128::from(self.per_megasecond);
        (rate > 0).then(|| ((1_000_000_000_000_000u128 + rate / 2) / rate) as u64)
    }

    /// This rate divided evenly among `parts` senders.
    pub fn split(self, parts: u32) -> PacketRate {
        PacketRate { per_megasecond: self.per_megasecond / u64::from(parts.max(1)) }
    }
}

impl std::str::FromStr for PacketRate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        const UNITS: [(&str, u128); 6] = [
            ("/s", 1_000_000),
            ("k/s", 1_000_000_000),
            ("M/s", 1_000_000_000_000),
            ("pps", 1_000_000),
            ("kpps", 1_000_000_000),
            ("Mpps", 1_000_000_000_000),
        ];
        let rate = parse_with_units(text, &UNITS, "packet rate", "20000/s")?;
        u64::try_from(rate)
            .map(|per_megasecond| PacketRate { per_megasecond })
            .map_err(|_| format!("packet rate `{text}` is too large"))
    }
}

impl fmt::Display for PacketRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_megasecond.is_multiple_of(1_000_000) {
            write!(f, "{}/s", self.per_megasecond / 1_000_000)
        } else {
            write!(f, "{}/s", self.per_second())
        }
    }
}

quantity_serde!(PacketRate, "a packet rate such as \"20000/s\"");

/// A size in bytes: `"1400B"`, `"64KiB"`, `"1MB"` (SI and binary prefixes both accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        const UNITS: [(&str, u128); 7] = [
            ("B", 1),
            ("KB", 1_000),
            ("kB", 1_000),
            ("MB", 1_000_000),
            ("GB", 1_000_000_000),
            ("KiB", 1 << 10),
            ("MiB", 1 << 20),
        ];
        let bytes = parse_with_units(text, &UNITS, "size", "1400B")?;
        u64::try_from(bytes).map(ByteSize).map_err(|_| format!("size `{text}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1 << 20 && self.0.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", self.0 >> 20)
        } else if self.0 >= 1 << 10 && self.0.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", self.0 >> 10)
        } else {
            write!(f, "{}B", self.0)
        }
    }
}

quantity_serde!(ByteSize, "a size such as \"1400B\"");

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: std::str::FromStr<Err = String> + PartialEq + fmt::Debug>(
        text: &str,
        expected: Result<T, &str>,
    ) {
        match (text.parse::<T>(), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{text}: {got}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn durations() {
        let ns = |n| Ok(Duration(SimDuration::from_nanos(n)));
        check("500ms", ns(500_000_000));
        check("1.5s", ns(1_500_000_000));
        check("10us", ns(10_000));
        check("10µs", ns(10_000));
        check("250ns", ns(250));
        check(" 2 s ", ns(2_000_000_000));
        check(".5ms", ns(500_000));
        check::<Duration>("1.5ns", Err("not a whole number"));
        check::<Duration>("500", Err("has no unit"));
        check::<Duration>("5 minutes", Err("unknown unit `minutes`"));
        check::<Duration>("-1s", Err("non-negative number"));
        check::<Duration>("1.2.3s", Err("not a whole number"));
        check::<Duration>("99999999999999999999s", Err("too long"));
        check::<Duration>("999999999999999999999999999999999999999s", Err("out of range"));
    }

    #[test]
    fn bandwidths_rates_and_sizes() {
        check("10Gbps", Ok(Bandwidth(10_000_000_000)));
        check("40Gb/s", Ok(Bandwidth(40_000_000_000)));
        check("2.5Gbps", Ok(Bandwidth(2_500_000_000)));
        check::<Bandwidth>("10GB/s", Err("unknown unit"));
        check("20000/s", Ok(PacketRate { per_megasecond: 20_000_000_000 }));
        check("20k/s", Ok(PacketRate { per_megasecond: 20_000_000_000 }));
        check("0.5/s", Ok(PacketRate { per_megasecond: 500_000 }));
        check("1400B", Ok(ByteSize(1400)));
        check("64KiB", Ok(ByteSize(65_536)));
        check("1MB", Ok(ByteSize(1_000_000)));
    }

    #[test]
    fn rate_intervals_round_to_the_nearest_nanosecond() {
        let rate: PacketRate = "3/s".parse().expect("valid");
        assert_eq!(rate.interval_ns(), Some(333_333_333));
        let rate: PacketRate = "20000/s".parse().expect("valid");
        assert_eq!(rate.interval_ns(), Some(50_000));
        assert_eq!(PacketRate { per_megasecond: 0 }.interval_ns(), None);
    }

    #[test]
    fn display_round_trips() {
        for text in ["500ms", "1.5s", "10Gbps", "20000/s", "1400B", "64KiB"] {
            let shown = match text {
                t if t.ends_with("bps") => t.parse::<Bandwidth>().map(|v| v.to_string()),
                t if t.ends_with("/s") => t.parse::<PacketRate>().map(|v| v.to_string()),
                t if t.ends_with('B') => t.parse::<ByteSize>().map(|v| v.to_string()),
                t => t.parse::<Duration>().map(|v| v.to_string()),
            };
            assert_eq!(shown.as_deref(), Ok(text));
        }
    }
}
