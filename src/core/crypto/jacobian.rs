//! P-256 points in Jacobian coordinates, over p256's field elements (its `expose-field`).
//!
//! Why not p256's own points: they use the complete formulas of Renes, Costello and Batina,
//! which need no branch for the identity or for equal points, at the price of about 13
//! multiplications a doubling. A variable-base scalar multiplication is 256 doublings, and
//! a handshake makes two (the ECDH product and the peer's signature check), so the
//! doubling's cost is most of a handshake's. In Jacobian coordinates (`x = X/Z²`,
//! `y = Y/Z³`) with `a = −3` a doubling is 3 multiplications and 5 squarings
//! (`dbl-2001-b`), an addition 11 and 5 (`add-2007-bl`), one with an affine point 7 and 4
//! (`madd-2007-bl`), all from the Explicit-Formulas Database.
//!
//! Those additions are wrong for the identity and for equal points. The variable-time ones
//! ([`Point::add_vartime`], [`Point::add_affine_vartime`]) branch on those cases, for
//! public values only. The constant-time products ([`mul_x`], and the generator's in
//! `super::generator`) never meet equal points (argued where they add) and handle the
//! identity, and a zero window, by conditional selection.

use p256::elliptic_curve::subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use p256::{FieldBytes, FieldElement, Scalar};
use zeroize::Zeroizing;

/// A point other than the identity, `(x, y)`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Affine {
    x: FieldElement,
    y: FieldElement,
}

impl Affine {
    /// The point of coordinates `x`, `y` (big-endian), which the caller has validated as a
    /// point of the curve (p256's key parsing does). `None` if a coordinate is not below p.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
        let field = |b: &[u8]| -> Option<FieldElement> {
            let bytes: [u8; 32] = b.try_into().ok()?;
            FieldElement::from_bytes(&bytes.into()).into()
        };
        Some(Affine {
            x: field(x)?,
            y: field(y)?,
        })
    }

    /// The point of an uncompressed SEC1 encoding (`04 || x || y`) already validated.
    pub fn from_uncompressed(sec1: &[u8]) -> Option<Self> {
        match sec1 {
            [4, rest @ ..] if rest.len() == 64 => {
                Affine::from_coordinates(&rest[..32], &rest[32..])
            }
            _ => None,
        }
    }

    /// `04 || x || y`.
    pub fn to_uncompressed(self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[0] = 4;
        out[1..33].copy_from_slice(&self.x.to_bytes());
        out[33..].copy_from_slice(&self.y.to_bytes());
        out
    }

    /// The x coordinate, big-endian.
    pub fn x_bytes(&self) -> FieldBytes {
        self.x.to_bytes()
    }

    #[cfg(test)]
    fn neg(&self) -> Affine {
        Affine {
            x: self.x,
            y: -self.y,
        }
    }
}

impl ConditionallySelectable for Affine {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        Affine {
            x: FieldElement::conditional_select(&a.x, &b.x, choice),
            y: FieldElement::conditional_select(&a.y, &b.y, choice),
        }
    }
}

/// `(X, Y, Z)` for the point `(X/Z², Y/Z³)`; `Z = 0` is the identity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    x: FieldElement,
    y: FieldElement,
    z: FieldElement,
}

impl ConditionallySelectable for Point {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        Point {
            x: FieldElement::conditional_select(&a.x, &b.x, choice),
            y: FieldElement::conditional_select(&a.y, &b.y, choice),
            z: FieldElement::conditional_select(&a.z, &b.z, choice),
        }
    }
}

impl From<&Affine> for Point {
    fn from(a: &Affine) -> Point {
        Point {
            x: a.x,
            y: a.y,
            z: FieldElement::ONE,
        }
    }
}

impl Point {
    pub const IDENTITY: Point = Point {
        x: FieldElement::ONE,
        y: FieldElement::ONE,
        z: FieldElement::ZERO,
    };

    pub fn is_identity(&self) -> Choice {
        self.z.is_zero()
    }

    pub fn neg(&self) -> Point {
        Point {
            x: self.x,
            y: -self.y,
            z: self.z,
        }
    }

    /// `2·self` (`dbl-2001-b`, `a = −3`). The identity doubles to the identity (`Z` stays
    /// 0), and no point of P-256 has `y = 0` (its order is odd), so this is always right.
    pub fn double(&self) -> Point {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x * gamma;
        let alpha = (self.x - delta) * (self.x + delta);
        let alpha = alpha.double() + alpha;
        let beta4 = beta.double().double();
        let x = alpha.square() - beta4.double();
        let z = (self.y + self.z).square() - gamma - delta;
        let gamma_sq8 = gamma.square().double().double().double();
        let y = alpha * (beta4 - x) - gamma_sq8;
        Point { x, y, z }
    }

    /// `self + q` (`add-2007-bl`). With `VARTIME` every case is handled by branching; without,
    /// the result is wrong when either point is the identity or the two are equal (it is the
    /// identity for `q = −self`, which is right).
    fn add<const VARTIME: bool>(&self, q: &Point) -> Point {
        if VARTIME {
            if bool::from(self.is_identity()) {
                return *q;
            }
            if bool::from(q.is_identity()) {
                return *self;
            }
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x * z2z2;
        let u2 = q.x * z1z1;
        let s1 = self.y * q.z * z2z2;
        let s2 = q.y * self.z * z1z1;
        let h = u2 - u1;
        let r = (s2 - s1).double();
        if VARTIME && bool::from(h.is_zero()) {
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Point::IDENTITY
            };
        }
        let i = h.double().square();
        let j = h * i;
        let v = u1 * i;
        let x = r.square() - j - v.double();
        let y = r * (v - x) - (s1 * j).double();
        let z = ((self.z + q.z).square() - z1z1 - z2z2) * h;
        Point { x, y, z }
    }

    /// `self + q` for an affine `q` (`madd-2007-bl`); `VARTIME` as for [`Point::add`].
    fn add_affine<const VARTIME: bool>(&self, q: &Affine) -> Point {
        if VARTIME && bool::from(self.is_identity()) {
            return Point::from(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x * z1z1;
        let s2 = q.y * self.z * z1z1;
        let h = u2 - self.x;
        let r = (s2 - self.y).double();
        if VARTIME && bool::from(h.is_zero()) {
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Point::IDENTITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h * i;
        let v = self.x * i;
        let x = r.square() - j - v.double();
        let y = r * (v - x) - (self.y * j).double();
        let z = (self.z + h).square() - z1z1 - hh;
        Point { x, y, z }
    }

    /// `self + q`, any points; not constant time (public values only).
    pub fn add_vartime(&self, q: &Point) -> Point {
        self.add::<true>(q)
    }

    /// `self + q`, any `self`; not constant time (public values only).
    pub fn add_affine_vartime(&self, q: &Affine) -> Point {
        self.add_affine::<true>(q)
    }

    /// `self + q` in constant time, for `self ≠ ±q` (the caller's argument): the identity
    /// on either side is handled by selection (`self_is_identity`, `q_is_zero`: add
    /// nothing).
    pub fn add_ct(&self, self_is_identity: Choice, q: &Point, q_is_zero: Choice) -> Point {
        let mut sum = self.add::<false>(q);
        sum.conditional_assign(q, self_is_identity);
        sum.conditional_assign(self, q_is_zero);
        sum
    }

    /// [`Point::add_ct`] for an affine `q`.
    pub fn add_affine_ct(&self, self_is_identity: Choice, q: &Affine, q_is_zero: Choice) -> Point {
        let mut sum = self.add_affine::<false>(q);
        sum.conditional_assign(&Point::from(q), self_is_identity);
        sum.conditional_assign(self, q_is_zero);
        sum
    }

    /// The affine point, `None` for the identity. One inversion (p256's, constant time).
    pub fn to_affine(self) -> Option<Affine> {
        let z_inv = Option::<FieldElement>::from(self.z.invert())?;
        let z_inv2 = z_inv.square();
        Some(Affine {
            x: self.x * z_inv2,
            y: self.y * z_inv2 * z_inv,
        })
    }

    /// Whether `x mod n` equals `r` (a scalar, so below n): the ECDSA check, without the
    /// inversion to affine. `x < p`, and `p < 2n`, so `x mod n = r` means `x = r` or
    /// `x = r + n` (possible only for `r < p − n`). `false` for the identity.
    pub fn x_mod_n_is(&self, r: &Scalar) -> bool {
        if bool::from(self.is_identity()) {
            return false;
        }
        let r_bytes = r.to_bytes();
        let Some(r_field) = Option::<FieldElement>::from(FieldElement::from_bytes(&r_bytes)) else {
            return false; // r < n < p: never
        };
        let zz = self.z.square();
        if self.x == r_field * zz {
            return true;
        }
        if r_bytes[..] >= P_MINUS_N[..] {
            return false;
        }
        self.x == (r_field + order_in_field()) * zz
    }
}

/// p − n, big-endian.
const P_MINUS_N: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x43, 0x19, 0x05, 0x53, 0x58, 0xe8, 0x61, 0x7b,
    0x0c, 0x46, 0x35, 0x3d, 0x03, 0x9c, 0xda, 0xae,
];

/// n, as an element of the field (n < p).
fn order_in_field() -> FieldElement {
    use p256::elliptic_curve::{Curve, FieldBytesEncoding};
    let n = <p256::U256 as FieldBytesEncoding<p256::NistP256>>::encode_field_bytes(
        &p256::NistP256::ORDER,
    );
    Option::from(FieldElement::from_bytes(&n)).expect("n < p")
}

/// Normalises many points with one inversion (Montgomery's trick). None may be the identity.
pub(crate) fn to_affine_all(points: &[Point]) -> Vec<Affine> {
    // prefix[i] = z_0 · … · z_i
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = FieldElement::ONE;
    for p in points {
        acc *= p.z;
        prefix.push(acc);
    }
    let mut inv = Option::<FieldElement>::from(acc.invert()).expect("no identity among the points");
    let mut out = vec![Affine::default(); points.len()];
    for i in (0..points.len()).rev() {
        // inv = (z_0 · … · z_i)⁻¹
        let z_inv = if i == 0 { inv } else { inv * prefix[i - 1] };
        inv *= points[i].z;
        let z_inv2 = z_inv.square();
        out[i] = Affine {
            x: points[i].x * z_inv2,
            y: points[i].y * z_inv2 * z_inv,
        };
    }
    out
}

/// The x coordinate of `k·p`, for a secret `k` (an ephemeral key) and a point `p` of the
/// curve other than the identity (a peer's validated key): the ECDH shared secret. Constant
/// time in `k`: 4-bit windows from the top, each table entry chosen by a scan of the whole
/// table, the identity and a zero window handled by selection.
///
/// No addition meets equal points: before window `i`'s addition the accumulator is
/// `m·p` with `m = 16·⌊k / 16^(i+1)⌋`, the entry `d·p` with `1 ≤ d ≤ 15`; `m ≡ ±d (mod n)`
/// would need `m = d` (but `m` is 0 or at least 16) or `m + d = n` (but `m + d ≤ k < n`),
/// and p has the prime order n.
pub(crate) fn mul_x(p: &Affine, k: &Scalar) -> Zeroizing<FieldBytes> {
    let bytes = Zeroizing::new(<[u8; 32]>::from(k.to_bytes()));
    // table[j] = (j + 1)·p; (j + 1)·p + p never meets ±p for j ≥ 1 (j + 2 < n).
    let mut table = [Point::from(p); 15];
    table[1] = table[0].double();
    for j in 2..15 {
        table[j] = table[j - 1].add_affine::<false>(p);
    }
    let mut acc = Point::IDENTITY;
    let mut acc_is_identity = Choice::from(1);
    for i in (0..64).rev() {
        if i != 63 {
            acc = acc.double().double().double().double();
        }
        let digit = window(&bytes, i);
        let zero = digit.ct_eq(&0);
        acc = acc.add_ct(acc_is_identity, &select(&table, digit), zero);
        acc_is_identity &= zero;
    }
    let x = acc
        .to_affine()
        .expect("k·p is not the identity: 0 < k < n and p has order n")
        .x_bytes();
    Zeroizing::new(x)
}

/// The multiple `digit` (1 to 15) of a table holding it at `digit − 1`, by a scan of the
/// whole table: which entry is read does not show. For 0 it is the first entry, which the
/// caller adds nothing of.
pub(crate) fn select<T: ConditionallySelectable>(table: &[T; 15], digit: u8) -> T {
    let mut entry = table[0];
    for (j, point) in table.iter().enumerate().skip(1) {
        entry.conditional_assign(point, digit.ct_eq(&(j as u8 + 1)));
    }
    entry
}

/// The `i`-th 4-bit window of a big-endian scalar, least significant first.
pub(crate) fn window(bytes: &[u8; 32], i: usize) -> u8 {
    let byte = bytes[31 - i / 2];
    if i.is_multiple_of(2) {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::elliptic_curve::ff::{Field, PrimeField};
    use p256::elliptic_curve::group::Group;
    use p256::elliptic_curve::point::AffineCoordinates;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::{AffinePoint, ProjectivePoint};
    use rand_chacha::rand_core::SeedableRng;

    pub(crate) fn ours(p: &ProjectivePoint) -> Affine {
        Affine::from_uncompressed(p.to_affine().to_encoded_point(false).as_bytes()).unwrap()
    }

    pub(crate) fn same(ours: &Point, theirs: &ProjectivePoint) -> bool {
        match ours.to_affine() {
            None => bool::from(theirs.is_identity()),
            Some(a) => {
                let t: AffinePoint = theirs.to_affine();
                !bool::from(theirs.is_identity())
                    && a.to_uncompressed().as_slice() == t.to_encoded_point(false).as_bytes()
            }
        }
    }

    /// The test scalars: the edges (0, 1, −1, −2), every window value in every place,
    /// the powers of two, and random ones.
    pub(crate) fn scalars(rng: &mut rand_chacha::ChaCha20Rng) -> Vec<Scalar> {
        let minus_one = -Scalar::ONE;
        let mut scalars = vec![
            Scalar::ZERO,
            Scalar::ONE,
            minus_one,
            minus_one - Scalar::ONE,
        ];
        for n in 0..15u8 {
            scalars.push(Scalar::from_repr([n * 0x11; 32].into()).unwrap());
        }
        let mut two_to_the = Scalar::ONE;
        for _ in 0..256 {
            scalars.push(two_to_the);
            two_to_the = two_to_the.double();
        }
        for _ in 0..64 {
            scalars.push(Scalar::random(&mut *rng));
        }
        scalars
    }

    #[test]
    fn additions_and_doublings_agree_with_p256_in_every_case() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for _ in 0..50 {
            let a = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
            let b = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
            let (ja, jb) = (Point::from(&ours(&a)), Point::from(&ours(&b)));
            // A Jacobian point with Z ≠ 1, as products leave them.
            let ja2 = ja.double();
            assert!(same(&ja2, &a.double()));
            assert!(same(&ja.add_vartime(&jb), &(a + b)));
            assert!(same(
                &ja2.add_vartime(&jb.double()),
                &(a.double() + b.double())
            ));
            assert!(same(&ja2.add::<false>(&jb), &(a.double() + b)));
            assert!(same(&ja2.add_affine::<false>(&ours(&b)), &(a.double() + b)));
            // Equal, opposite, identity.
            assert!(same(&ja2.add_vartime(&ja2), &a.double().double()));
            assert!(same(
                &ja2.add_affine_vartime(&ours(&a.double())),
                &a.double().double()
            ));
            assert!(same(
                &ja2.add_vartime(&ja2.neg()),
                &ProjectivePoint::IDENTITY
            ));
            assert!(same(
                &ja2.add::<false>(&ja2.neg()),
                &ProjectivePoint::IDENTITY
            ));
            assert!(same(
                &ja2.add_affine_vartime(&ours(&a.double()).neg()),
                &ProjectivePoint::IDENTITY
            ));
            assert!(same(&Point::IDENTITY.add_vartime(&ja2), &a.double()));
            assert!(same(&ja2.add_vartime(&Point::IDENTITY), &a.double()));
            assert!(same(&Point::IDENTITY.add_affine_vartime(&ours(&b)), &b));
            assert!(same(&Point::IDENTITY.double(), &ProjectivePoint::IDENTITY));
            let none = Choice::from(0);
            assert!(same(
                &ja2.add_affine_ct(none, &ours(&b), none),
                &(a.double() + b)
            ));
            assert!(same(
                &ja2.add_affine_ct(Choice::from(1), &ours(&b), none),
                &b
            ));
            assert!(same(
                &ja2.add_affine_ct(none, &ours(&b), Choice::from(1)),
                &a.double()
            ));
            // Many at once.
            let all = [ja, ja2, jb.double().double(), ja2.add_vartime(&jb)];
            for (p, q) in to_affine_all(&all).iter().zip(&all) {
                assert_eq!(
                    p.to_uncompressed(),
                    q.to_affine().unwrap().to_uncompressed()
                );
            }
        }
    }

    #[test]
    fn the_shared_secret_is_p256s() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let p = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
        for k in scalars(&mut rng)
            .into_iter()
            .filter(|k| !bool::from(k.is_zero()))
        {
            let secret = p256::NonZeroScalar::new(k).unwrap();
            let expected = p256::ecdh::diffie_hellman(secret, p.to_affine());
            assert_eq!(
                mul_x(&ours(&p), &k)[..],
                expected.raw_secret_bytes()[..],
                "k = {k:?}"
            );
        }
        // The generator, and a point of small x.
        let k = Scalar::random(&mut rng);
        let g = ProjectivePoint::GENERATOR;
        assert_eq!(*mul_x(&ours(&g), &k), (g * k).to_affine().x());
    }

    /// A point whose x is at least n (about one in 2^128 of them), at a random Z: its
    /// `x mod n` is `x − n`.
    #[test]
    fn the_signature_check_takes_x_mod_n() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let b = FieldElement::from_bytes(
            &hex_bytes("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b").into(),
        )
        .unwrap();
        let n = order_in_field();
        let mut found = 0;
        for small in 1u64..200 {
            let x = n + FieldElement::from(small);
            let rhs = x.square() * x - x.double() - x + b;
            let Some(y) = Option::<FieldElement>::from(rhs.sqrt()) else {
                continue;
            };
            let z = FieldElement::random(&mut rng);
            let p = Point {
                x: x * z.square(),
                y: y * z.square() * z,
                z,
            };
            let r = Scalar::from(small);
            assert!(p.x_mod_n_is(&r), "x = n + {small}");
            assert!(!p.x_mod_n_is(&(r + Scalar::ONE)));
            // Its double is an ordinary point: x below n.
            let d = p.double();
            let dx = d.to_affine().unwrap().x_bytes();
            let r = Option::<Scalar>::from(Scalar::from_repr(dx)).expect("x < n");
            assert!(d.x_mod_n_is(&r));
            assert!(!d.x_mod_n_is(&(r + Scalar::ONE)));
            found += 1;
        }
        assert!(found > 50, "{found}");
        assert!(!Point::IDENTITY.x_mod_n_is(&Scalar::ONE));
    }

    fn hex_bytes(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
