//! Finite-difference gradient checking for the engine's tests.

/// Deterministic values in [-1, 1) from a seed (xorshift), for test inputs.
pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9).wrapping_add(0x7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// `sum_i weights[i] * output[i]` in f64: the scalar whose gradient with respect to `output`
/// is `weights`.
pub(crate) fn weighted_sum(output: &[f32], weights: &[f32]) -> f64 {
    output
        .iter()
        .zip(weights)
        .map(|(&y, &w)| y as f64 * w as f64)
        .sum()
}

/// Compares `analytic[i]` with the central difference `(f(x + h e_i) - f(x - h e_i)) / 2h`
/// for every `i` in `indices`, and panics naming the first entry off by more than
/// `atol + rtol * |numeric|`.
pub(crate) fn check(
    name: &str,
    x: &mut [f32],
    analytic: &[f32],
    indices: impl IntoIterator<Item = usize>,
    h: f32,
    (atol, rtol): (f64, f64),
    mut f: impl FnMut(&[f32]) -> f64,
) {
    let mut checked = 0;
    for i in indices {
        let original = x[i];
        x[i] = original + h;
        let plus = f(x);
        x[i] = original - h;
        let minus = f(x);
        x[i] = original;
        let step = (original + h) as f64 - (original - h) as f64;
        let numeric = (plus - minus) / step;
        let error = (numeric - analytic[i] as f64).abs();
        let allowed = atol + rtol * numeric.abs();
        assert!(
            error <= allowed,
            "{name}[{i}]: analytic {} vs finite difference {numeric} (error {error:.3e} > {allowed:.3e})",
            analytic[i]
        );
        checked += 1;
    }
    assert!(checked > 0, "{name}: no entries checked");
}
