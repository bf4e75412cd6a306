//! `k·G` for the P-256 generator `G`, from a table of its multiples made once per process.
//!
//! Three of the five scalar multiplications each end of a handshake makes are by the
//! generator: its ephemeral public key, the nonce point of its identity signature, and half
//! of the peer's signature check. The p256 crate computes each like any other point's: 256
//! doublings and 64 additions. With `j·16^i·G` tabulated (64 rows of 16 points, about
//! 100 KB, under a millisecond to build) a product is 64 additions and no doubling,
//! about a quarter of the work. The ECDH product (a variable point) is left to p256.
//!
//! The table stays projective: p256 0.13 normalises points to affine one inversion each
//! (its batch inversion is not exposed), 1 024 inversions (~10 ms) per process, against a
//! quarter more work per addition (full instead of mixed additions).
//!
//! Constant time as p256's own multiplication is: each row is read whole, the entry wanted
//! chosen with `subtle`'s conditional selection, and the additions are the complete
//! formulas p256 uses (no branch on the identity or on equal points).

use std::sync::OnceLock;

use p256::elliptic_curve::subtle::{ConditionallySelectable, ConstantTimeEq};
use p256::{ProjectivePoint, Scalar};
use zeroize::Zeroizing;

/// 4-bit windows of a 256-bit scalar.
const ROWS: usize = 64;

/// Row `i` holds `j·16^i·G` for `j` in `0..16` (entry 0 is the identity).
type Table = Vec<[ProjectivePoint; 16]>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rows = Vec::with_capacity(ROWS);
        // 16^i·G
        let mut base = ProjectivePoint::GENERATOR;
        for _ in 0..ROWS {
            let mut multiples = [ProjectivePoint::IDENTITY; 16];
            for j in 1..16 {
                multiples[j] = multiples[j - 1] + base;
            }
            base = multiples[15] + base;
            rows.push(multiples);
        }
        rows
    })
}

/// `k·G`.
pub fn mul_generator(k: &Scalar) -> ProjectivePoint {
    // Big-endian; a secret (an ephemeral key, a signature nonce), wiped after use.
    let bytes = Zeroizing::new(<[u8; 32]>::from(k.to_bytes()));
    let mut acc = ProjectivePoint::IDENTITY;
    for (i, row) in table().iter().enumerate() {
        let byte = bytes[31 - i / 2];
        let nibble = if i % 2 == 0 { byte & 0x0f } else { byte >> 4 };
        let mut t = ProjectivePoint::IDENTITY;
        for (j, point) in row.iter().enumerate().skip(1) {
            t.conditional_assign(point, nibble.ct_eq(&(j as u8)));
        }
        acc += t;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ff::{Field, PrimeField};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn agrees_with_the_generic_multiplication() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(19);
        let minus_one = -Scalar::ONE;
        let mut scalars = vec![
            Scalar::ZERO,
            Scalar::ONE,
            minus_one,
            minus_one - Scalar::ONE,
        ];
        // Every nibble value but 15 in every position (0xff…ff is over the order; -1 has
        // plenty of 15s), and powers of two.
        for n in 0..15u8 {
            scalars.push(Scalar::from_repr([n * 0x11; 32].into()).unwrap());
        }
        let mut two_to_the = Scalar::ONE;
        for _ in 0..256 {
            scalars.push(two_to_the);
            two_to_the = two_to_the.double();
        }
        for _ in 0..64 {
            scalars.push(Scalar::random(&mut rng));
        }
        for k in scalars {
            let expected = (ProjectivePoint::GENERATOR * k).to_affine();
            assert_eq!(mul_generator(&k).to_affine(), expected, "k = {k:?}");
        }
    }
}
