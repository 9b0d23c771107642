//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Routers decrement the TTL and rewrite a few bytes of every packet; recomputing the whole
//! checksum for that would cost a pass over the header (or, for UDP, the payload). The
//! incremental form updates it from the old and new values of the changed 16-bit words.

/// The ones'-complement sum of `bytes` as big-endian 16-bit words, folded to 16 bits, not
/// complemented. A trailing odd byte is padded with zero, as RFC 1071 says.
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    fold(sum_words(bytes, 0))
}

/// Adds `bytes` as big-endian 16-bit words to an unfolded 32-bit accumulator.
pub fn sum_words(bytes: &[u8], mut acc: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds an accumulator of 16-bit words into a 16-bit ones'-complement sum.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for data whose ones'-complement sum is `sum`.
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1624 eqn. 3: the new checksum field after one 16-bit word of the covered data changed
/// from `old_word` to `new_word`.
pub fn update(checksum: u16, old_word: u16, new_word: u16) -> u16 {
    // HC' = ~(~HC + ~m + m')
    let acc = u64::from(!checksum) + u64::from(!old_word) + u64::from(new_word);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The worked example of RFC 1071 section 3: the sum of these words is `ddf2`.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&data), 0xddf2);
    }

    proptest! {
        /// Updating one word incrementally gives the checksum a full recomputation gives
        /// (both are valid encodings; compare by verifying the data instead of the raw field).
        #[test]
        fn incremental_update_verifies(mut data in proptest::collection::vec(any::<u8>(), 2..64),
                                       index in any::<prop::sample::Index>(),
                                       new_word in any::<u16>()) {
            let words = data.len() / 2;
            let at = index.index(words) * 2;
            let checksum = finish(ones_complement_sum(&data));
            let old_word = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new_word.to_be_bytes());
            let updated = update(checksum, old_word, new_word);
            // Data plus its checksum sums to all ones (or zero's other encoding).
            let total = fold(u64::from(ones_complement_sum(&data)) + u64::from(updated));
            prop_assert_eq!(total, 0xffff);
        }
    }
}
