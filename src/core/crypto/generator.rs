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

//! `k·G` for the P-256 generator `G`, from a table of its multiples made once per process,
//! and the signature check's `u1·G + u2·Q`.
//!
//! Three of the five scalar multiplications each end of a handshake makes are by the
//! generator: its ephemeral public key, the nonce point of its identity signature, and half
//! of the peer's signature check. With `j·16^i·G` tabulated (64 rows of 15 affine points,
//! 60 KB, about a millisecond to build) a product is 64 additions and no doubling. The
//! table is affine (normalised with one inversion, `jacobian::to_affine_all`), so each is
//! an addition of an affine point to a Jacobian one (see `super::jacobian`).
//!
//! A signature check's products are of public values only: [`check`] reads the table
//! directly for `u1·G` and computes `u2·Q` in variable time (width-5 NAF), and compares x
//! without an inversion. [`mul_generator`] is constant time: each row is read whole, the
//! entry wanted chosen with `subtle`'s conditional selection, the identity and zero windows
//! handled by selection.

use std::sync::OnceLock;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::subtle::{Choice, ConstantTimeEq};
use p256::{ProjectivePoint, Scalar};
use zeroize::Zeroizing;

use super::jacobian::{select, to_affine_all, window, Affine, Point};

/// 4-bit windows of a 256-bit scalar.
const ROWS: usize = 64;

/// Row `i` holds `j·16^i·G` for `j` in `1..16` (entry `j − 1`).
type Table = Vec<[Affine; 15]>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let g = ProjectivePoint::GENERATOR
            .to_affine()
            .to_encoded_point(false);
        let g = Affine::from_uncompressed(g.as_bytes()).expect("the generator is a point");
        let mut points = Vec::with_capacity(ROWS * 15);
        // 16^i·G
        let mut base = Point::from(&g);
        for _ in 0..ROWS {
            let mut multiple = base;
            points.push(multiple);
            for _ in 1..15 {
                multiple = multiple.add_vartime(&base);
                points.push(multiple);
            }
            base = multiple.add_vartime(&base);
        }
        to_affine_all(&points)
            .chunks_exact(15)
            .map(|row| row.try_into().expect("rows of 15"))
            .collect()
    })
}

/// `k·G`, in constant time in `k` (an ephemeral key, a signature nonce).
///
/// No addition meets equal points: before row `i`'s addition the accumulator is
/// `(k mod 16^i)·G`, the entry `d·16^i·G` with `1 ≤ d ≤ 15`; `k mod 16^i ≡ ±d·16^i (mod n)`
/// would need `k mod 16^i = d·16^i` (but it is below `16^i`) or their sum, `k mod 16^(i+1)`,
/// to be n (but it is at most `k < n`).
pub fn mul_generator(k: &Scalar) -> Point {
    let bytes = Zeroizing::new(<[u8; 32]>::from(k.to_bytes()));
    let mut acc = Point::IDENTITY;
    let mut acc_is_identity = Choice::from(1);
    for (i, row) in table().iter().enumerate() {
        let digit = window(&bytes, i);
        let zero = digit.ct_eq(&0);
        acc = acc.add_affine_ct(acc_is_identity, &select(row, digit), zero);
        acc_is_identity &= zero;
    }
    acc
}

/// Whether `x(u1·G + u2·q) mod n = r`: the ECDSA check, all of it public, not constant
/// time. `u2·q` by width-5 NAF (about 43 additions instead of the constant-time method's
/// 64, no table scans), then `u1·G` added from the table's rows, entries read directly.
pub fn check(q: &Affine, u1: &Scalar, u2: &Scalar, r: &Scalar) -> bool {
    let mut acc = mul_public(q, u2);
    let bytes = <[u8; 32]>::from(u1.to_bytes());
    for (i, row) in table().iter().enumerate() {
        let digit = window(&bytes, i);
        if digit != 0 {
            acc = acc.add_affine_vartime(&row[usize::from(digit) - 1]);
        }
    }
    acc.x_mod_n_is(r)
}

/// `k·p` for a public `k` and `p`: not constant time.
fn mul_public(p: &Affine, k: &Scalar) -> Point {
    // Odd multiples p, 3p, …, 15p.
    let p = Point::from(p);
    let double = p.double();
    let mut odd = [p; 8];
    for i in 1..8 {
        odd[i] = odd[i - 1].add_vartime(&double);
    }
    let mut acc = Point::IDENTITY;
    for &digit in naf5(k).iter().rev() {
        acc = acc.double();
        match digit {
            0 => {}
            d if d > 0 => acc = acc.add_vartime(&odd[(d / 2) as usize]),
            d => acc = acc.add_vartime(&odd[(-d / 2) as usize].neg()),
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
    use crate::core::crypto::jacobian::tests::{ours, same, scalars};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn products_agree_with_the_generic_multiplication() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(19);
        let p =
            ProjectivePoint::GENERATOR * <Scalar as p256::elliptic_curve::Field>::random(&mut rng);
        for k in scalars(&mut rng) {
            assert!(
                same(&mul_generator(&k), &(ProjectivePoint::GENERATOR * k)),
                "k = {k:?}"
            );
            assert!(same(&mul_public(&ours(&p), &k), &(p * k)), "k = {k:?}");
        }
    }
}
