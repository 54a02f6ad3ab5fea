//! Sample data written by code, so nothing is downloaded: the office sensor dataset that
//! `shoal demo` trains on and the tests use.

/// The bundled dataset, written by code so nothing is downloaded: office sensor readings and
/// whether the room was occupied (lit and breathed in), with 3 % of labels flipped.
pub fn sensors_csv(rows: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    // Uniform in [0, 1).
    let mut unit = move || (rng.unit() + 1.0) / 2.0;
    let mut csv = String::from("temperature,humidity,light,co2,occupied\n");
    for _ in 0..rows {
        let occupied = unit() < 0.45;
        let (light, co2) = if occupied {
            (250.0 + 500.0 * unit(), 750.0 + 600.0 * unit())
        } else if unit() < 0.3 {
            (300.0 + 500.0 * unit(), 400.0 + 250.0 * unit())
        } else {
            (150.0 * unit(), 400.0 + 450.0 * unit())
        };
        let temperature = 20.0 + 3.0 * unit() + if occupied { 1.0 } else { 0.0 };
        let humidity = 30.0 + 25.0 * unit();
        let label = if unit() < 0.03 { !occupied } else { occupied };
        csv.push_str(&format!(
            "{temperature:.2},{humidity:.1},{light:.1},{co2:.0},{}\n",
            if label { "yes" } else { "no" }
        ));
    }
    csv
}

/// SplitMix64, the same generator `shoal-model` seeds its test models with, so a seed gives
/// the same rows everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let a = sensors_csv(50, 7);
        assert_eq!(a, sensors_csv(50, 7));
        assert_ne!(a, sensors_csv(50, 8));
        assert_eq!(a.lines().count(), 51);
        assert!(a.starts_with("temperature,humidity,light,co2,occupied\n"));
    }
}
