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

/// Adds `bytes` as big-endian 16-bit words to an unfolded accumulator.
///
/// The result is congruent, modulo `0xffff`, to adding the words one by one (and zero only if
/// that is), which is all [`fold`] looks at: eight bytes are added at a time as two 32-bit
/// halves, since 2^16 is 1 modulo `0xffff` (RFC 1071 section 2, "parallel summation").
pub fn sum_words(bytes: &[u8], mut acc: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        // `chunks_exact(8)` yields eight bytes.
        let word = u64::from_be_bytes(chunk.try_into().expect("eight bytes"));
        acc += (word >> 32) + (word & 0xffff_ffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for pair in &mut pairs {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds an accumulator of 16-bit words into a 16-bit ones'-complement sum.
///
/// Four end-around-carry folds, without a loop (every packet's headers pass through here):
/// 64 bits to at most 33, then 16-bit folds to at most 18, 17 and 16 bits. Each fold keeps the
/// value modulo `0xffff` and keeps zero apart from its other encoding `0xffff`.
#[inline]
pub fn fold(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The ones'-complement sum of a 20-byte IPv4 header (one without options, nearly every
/// one): five 32-bit words, each congruent to the sum of its two 16-bit halves.
#[inline]
pub fn header_sum(header: &[u8; 20]) -> u16 {
    let word = |at: usize| {
        u64::from(u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]))
    };
    fold(word(0) + word(4) + word(8) + word(12) + word(16))
}

/// The checksum field value for data whose ones'-complement sum is `sum`.
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1624 eqn. 3: the new checksum field after one 16-bit word of the covered data changed
/// from `old_word` to `new_word`.
pub fn update(checksum: u16, old_word: u16, new_word: u16) -> u16 {
    update_by(checksum, delta(old_word, new_word))
}

/// What changing a 16-bit word from `old_word` to `new_word` adds to a ones'-complement sum
/// (`~m + m'`). Deltas of several changed words add up, for [`update_by`].
pub fn delta(old_word: u16, new_word: u16) -> u64 {
    u64::from(!old_word) + u64::from(new_word)
}

/// RFC 1624 eqn. 3 for any number of changed words at once, `delta` being the sum of their
/// [`delta`]s: HC' = ~(~HC + delta). Folding once gives what updating word by word gives (a
/// nonzero sum folds to the same value however it is split).
pub fn update_by(checksum: u16, delta: u64) -> u16 {
    !fold(u64::from(!checksum) + delta)
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

    /// The fold as RFC 1071 states it: add the carries back in until none is left.
    fn fold_by_carries(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn fold_keeps_zero_and_its_other_encoding_apart() {
        for acc in [0, 0xffff, 0x1_0000, 0x1_fffe, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            assert_eq!(fold(acc), fold_by_carries(acc), "{acc:#x}");
        }
    }

    proptest! {
        /// The loop-free fold gives what folding carry by carry gives, for any accumulator.
        #[test]
        fn fold_matches_folding_carry_by_carry(acc in any::<u64>(), small in 0u64..1 << 20) {
            prop_assert_eq!(fold(acc), fold_by_carries(acc));
            prop_assert_eq!(fold(small), fold_by_carries(small));
        }

        /// The 20-byte header sum is the general sum of the same bytes.
        #[test]
        fn header_sum_is_the_general_sum(header in any::<[u8; 20]>()) {
            prop_assert_eq!(header_sum(&header), ones_complement_sum(&header));
        }

        /// Summing eight bytes at a time folds to what summing word by word does, for any
        /// length (odd ones included) and starting accumulator.
        #[test]
        fn wide_summation_folds_like_word_by_word(data in proptest::collection::vec(any::<u8>(), 0..100),
                                                  start in 0u64..1 << 40) {
            let mut acc = start;
            for pair in data.chunks(2) {
                acc += u64::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
            }
            prop_assert_eq!(fold(sum_words(&data, start)), fold(acc));
        }

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
