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
//! A signature check's products are of public values only: [`mul_generator_public`]
//! reads the table directly and [`mul_public`] computes `u2·Q` in variable time (width-5
//! NAF). [`mul_generator`] is constant time as
//! p256's own multiplication is: each row is read whole, the entry wanted
//! chosen with `subtle`'s conditional selection, and the additions are the complete
//! formulas p256 uses (no branch on the identity or on equal points).

use std::sync::OnceLock;

use p256::elliptic_curve::subtle::{ConditionallySelectable, ConstantTimeEq};
use p256::elliptic_curve::Group;
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
        let nibble = nibble(&bytes, i);
        let mut t = ProjectivePoint::IDENTITY;
        for (j, point) in row.iter().enumerate().skip(1) {
            t.conditional_assign(point, nibble.ct_eq(&(j as u8)));
        }
        acc += t;
    }
    acc
}

/// `k·G` for a public `k` (a signature check's `u1`): not constant time. Each row's
/// entry is read directly, not chosen by a scan of the whole row (15 conditional
/// selections of a point a row), and zero nibbles add nothing.
pub fn mul_generator_public(k: &Scalar) -> ProjectivePoint {
    let bytes = <[u8; 32]>::from(k.to_bytes());
    let mut acc = ProjectivePoint::IDENTITY;
    for (i, row) in table().iter().enumerate() {
        let nibble = nibble(&bytes, i);
        if nibble != 0 {
            acc += row[usize::from(nibble)];
        }
    }
    acc
}

/// The `i`-th 4-bit window of big-endian `bytes`, least significant first: row `i`'s entry.
fn nibble(bytes: &[u8; 32], i: usize) -> u8 {
    let byte = bytes[31 - i / 2];
    if i.is_multiple_of(2) {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

/// `k·p` for a public `k` and `p` (a signature check's): not constant time. Width-5 NAF,
/// about 43 additions instead of the constant-time method's 64, and no table scans.
pub fn mul_public(p: &ProjectivePoint, k: &Scalar) -> ProjectivePoint {
    // Odd multiples p, 3p, …, 15p.
    let double = p.double();
    let mut odd = [*p; 8];
    for i in 1..8 {
        odd[i] = odd[i - 1] + double;
    }
    let mut acc = ProjectivePoint::IDENTITY;
    for &digit in naf5(k).iter().rev() {
        acc = acc.double();
        match digit {
            0 => {}
            d if d > 0 => acc += odd[(d / 2) as usize],
            d => acc -= odd[(-d / 2) as usize],
        }
    }
    acc
}

/// The width-5 non-adjacent form of `k`, least significant digit first: odd digits in
/// -15..=15, each followed by at least four zeros.
fn naf5(k: &Scalar) -> Vec<i8> {
    let be = k.to_bytes();
    // Little-endian limbs, one spare for the carry a negative digit adds.
    let mut limbs = [0u64; 5];
    for (i, limb) in limbs.iter_mut().take(4).enumerate() {
        let at = 32 - 8 * (i + 1);
        *limb = u64::from_be_bytes(be[at..at + 8].try_into().expect("8 bytes"));
    }
    let mut digits = Vec::with_capacity(258);
    while limbs.iter().any(|&l| l != 0) {
        let mut digit = 0i8;
        if limbs[0] & 1 == 1 {
            let low = (limbs[0] & 31) as i8;
            digit = if low >= 16 { low - 32 } else { low };
            // k -= digit
            if digit > 0 {
                limbs[0] -= digit as u64; // the low bits are at least `digit`
            } else {
                let (sum, mut carry) = limbs[0].overflowing_add((-digit) as u64);
                limbs[0] = sum;
                for limb in limbs.iter_mut().skip(1) {
                    if !carry {
                        break;
                    }
                    (*limb, carry) = limb.overflowing_add(1);
                }
            }
        }
        digits.push(digit);
        // k >>= 1
        for i in 0..5 {
            let next = if i < 4 { limbs[i + 1] << 63 } else { 0 };
            limbs[i] = (limbs[i] >> 1) | next;
        }
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ff::{Field, PrimeField};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn both_agree_with_the_generic_multiplication() {
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
        let p = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
        for k in scalars {
            let expected = (ProjectivePoint::GENERATOR * k).to_affine();
            assert_eq!(mul_generator(&k).to_affine(), expected, "k = {k:?}");
            assert_eq!(mul_generator_public(&k).to_affine(), expected, "k = {k:?}");
            let expected = (p * k).to_affine();
            assert_eq!(mul_public(&p, &k).to_affine(), expected, "k = {k:?}");
            assert_eq!(
                mul_public(&ProjectivePoint::IDENTITY, &k),
                ProjectivePoint::IDENTITY
            );
        }
    }
}
