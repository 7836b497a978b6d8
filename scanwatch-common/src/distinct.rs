//! Distinct-count estimation by linear counting (Whang, Vander-Zanden & Taylor, 1990).
//!
//! Each item is hashed to one of `m` bits; the kernel sets the bit and counts how many bits it
//! has set (`k`). The estimate of distinct items is `n̂ = -m · ln(1 - k/m)`. Bitmaps of the same
//! size and seed merge by bitwise OR, so per-CPU or per-window bitmaps can be combined.
//!
//! Why linear counting and not HyperLogLog: the kernel side is one hash, one mask and one bit
//! test-and-set (no `clz`, no division, no floating point), thresholds stay integer comparisons
//! (userspace converts a distinct-count threshold into a bits-set threshold with
//! [`bits_for_count`]), and at the small counts that matter for detection (tens to hundreds) it
//! is far more accurate than an HLL of the same size.
//!
//! Error bound (standard error, from the paper): `σ(n̂)/n = √(m·(e^t − t − 1)) / n` with
//! `t = n/m`. For the 1024-bit bitmaps (destination TCP ports, destination hosts):
//! n = 10 → ≈ 1.6 %, n = 100 → ≈ 1.6 %, n = 1000 → ≈ 2.6 %; for the 512-bit ones (UDP ports,
//! stealth-probe ports, ICMP hosts): n = 100 → ≈ 2.3 %, n = 1000 → ≈ 4.6 %. The documented
//! bound that the tests enforce is 4σ, or ±2 when that is larger: [`error_bound`]. Once all bits
//! are set the bitmap is saturated: the estimate becomes a lower bound (reported as
//! [`saturation_estimate`]), reached near `m · ln m` items (≈ 7100 for 1024 bits, ≈ 3200 for
//! 512).

/// A fixed-size bitmap for linear counting, `64 · WORDS` bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistinctBitmap<const WORDS: usize> {
    pub words: [u64; WORDS],
}

impl<const WORDS: usize> Default for DistinctBitmap<WORDS> {
    fn default() -> Self {
        Self { words: [0; WORDS] }
    }
}

impl<const WORDS: usize> DistinctBitmap<WORDS> {
    /// Number of bits (`m`).
    pub const BITS: u32 = (WORDS * 64) as u32;

    /// Sets the bit chosen by `hash`; returns true when it was not set before (a new item,
    /// barring collisions). `WORDS` must be a power of two.
    #[inline(always)]
    pub fn insert(&mut self, hash: u32) -> bool {
        let index = hash & (Self::BITS - 1);
        let word = (index >> 6) as usize;
        let mask = 1u64 << (index & 63);
        // `word < WORDS` because `index < BITS`; `get_mut` keeps a panic path out of the kernel.
        match self.words.get_mut(word) {
            Some(w) if *w & mask == 0 => {
                *w |= mask;
                true
            }
            _ => false,
        }
    }

    /// Whether the bit chosen by `hash` is set.
    #[inline(always)]
    pub fn contains(&self, hash: u32) -> bool {
        let index = hash & (Self::BITS - 1);
        self.words
            .get((index >> 6) as usize)
            .is_some_and(|w| w & (1u64 << (index & 63)) != 0)
    }

    /// Number of bits set.
    pub fn bits_set(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Clears every bit, one word store each (`crate::zeroed`: no byte loop in the kernel).
    #[inline(always)]
    pub fn clear(&mut self) {
        crate::zeroed::zero(&mut self.words);
    }

    /// Merges another bitmap (same size, same seed) into this one.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(other.words.iter()) {
            *a |= *b;
        }
    }
}

/// Linear-counting estimate of distinct items from `bits_set` of `bits`.
#[cfg(feature = "std")]
pub fn estimate(bits_set: u32, bits: u32) -> f64 {
    let m = f64::from(bits);
    if bits_set >= bits {
        return saturation_estimate(bits);
    }
    let zeros = f64::from(bits - bits_set);
    -m * (zeros / m).ln()
}

/// What a saturated bitmap reports: the estimate with one bit still clear, a lower bound.
#[cfg(feature = "std")]
pub fn saturation_estimate(bits: u32) -> f64 {
    let m = f64::from(bits);
    m * m.ln()
}

/// Smallest number of set bits whose estimate reaches `count` distinct items: the kernel compares
/// its bits-set counter against this, so thresholds stay integer comparisons.
#[cfg(feature = "std")]
pub fn bits_for_count(count: u32, bits: u32) -> u32 {
    if count == 0 {
        return 0;
    }
    let mut k = 1;
    while k < bits && estimate(k, bits) < f64::from(count) - 0.5 {
        k += 1;
    }
    k
}

/// The documented absolute error bound for an estimate of `n` distinct items with `bits` bits:
/// four standard errors, and at least 2 (at small counts the error is a whole number of hash
/// collisions, and two collisions among ten items in 512 bits happen about once in 300 tries).
#[cfg(feature = "std")]
pub fn error_bound(n: u32, bits: u32) -> f64 {
    let m = f64::from(bits);
    let t = f64::from(n) / m;
    let sigma = (m * (t.exp() - t - 1.0)).sqrt();
    (4.0 * sigma).max(2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{fmix32, hash_port};

    #[test]
    fn insert_reports_new_bits_only() {
        let mut b = DistinctBitmap::<16>::default();
        assert!(b.insert(5));
        assert!(!b.insert(5));
        assert!(!b.insert(5 + 1024)); // same bit after masking
        assert_eq!(b.bits_set(), 1);
        b.clear();
        assert_eq!(b.bits_set(), 0);
    }

    #[test]
    fn merge_is_union() {
        let mut a = DistinctBitmap::<8>::default();
        let mut b = DistinctBitmap::<8>::default();
        for p in 0..50u16 {
            a.insert(hash_port(1, 6, p));
        }
        for p in 25..75u16 {
            b.insert(hash_port(1, 6, p));
        }
        let mut exact = DistinctBitmap::<8>::default();
        for p in 0..75u16 {
            exact.insert(hash_port(1, 6, p));
        }
        a.merge(&b);
        assert_eq!(a, exact);
    }

    fn check_against_exact<const W: usize>(seed: u64) {
        let bits = DistinctBitmap::<W>::BITS;
        for n in [1u32, 10, 100, 1000] {
            let mut b = DistinctBitmap::<W>::default();
            for i in 0..n {
                b.insert(fmix32(seed as u32 ^ i.wrapping_mul(0x9e37_79b9)));
            }
            let est = estimate(b.bits_set(), bits);
            let err = (est - f64::from(n)).abs();
            assert!(
                err <= error_bound(n, bits),
                "m={bits} n={n} est={est:.1} err={err:.1} bound={:.1}",
                error_bound(n, bits)
            );
        }
    }

    #[test]
    fn estimate_within_bound_against_exact_counts() {
        for seed in 0..200 {
            check_against_exact::<16>(seed);
            check_against_exact::<8>(seed);
        }
    }

    #[test]
    fn bits_for_count_inverts_estimate() {
        for bits in [512, 1024] {
            for count in [1, 2, 5, 15, 25, 100, 1000] {
                let k = bits_for_count(count, bits);
                assert!(estimate(k, bits) >= f64::from(count) - 0.5);
                assert!(estimate(k - 1, bits) < f64::from(count) - 0.5);
            }
            assert_eq!(bits_for_count(1, bits), 1);
            assert_eq!(bits_for_count(0, bits), 0);
        }
        // Small counts are nearly exact: 15 ports need 15 bits of 1024.
        assert_eq!(bits_for_count(15, 1024), 15);
    }

    #[test]
    fn saturated_bitmap_reports_lower_bound() {
        let mut b = DistinctBitmap::<8>::default();
        for i in 0..20_000u32 {
            b.insert(fmix32(i));
        }
        assert_eq!(b.bits_set(), 512);
        assert!(estimate(b.bits_set(), 512) >= 3000.0);
    }
}
