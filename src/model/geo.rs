//! Geolocation post-processing: top-k, cell centres, and the confidence within a radius of
//! the predicted cell (haversine, Earth radius 6371 km).

/// Radii (km) at which confidence is reported.
pub const RADII_KM: [f64; 5] = [1.0, 25.0, 200.0, 750.0, 2500.0];

pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// Indices of the k largest values, largest first (ties: lower index first).
pub fn top_k(p: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| {
        p[b].partial_cmp(&p[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

/// Σ p over cells within r km of cell `c`, for each radius.
pub fn confidence(p: &[f32], lat: &[f64], lon: &[f64], c: usize) -> Vec<(f64, f64)> {
    let d: Vec<f64> = (0..p.len())
        .map(|i| haversine_km(lat[c], lon[c], lat[i], lon[i]))
        .collect();
    RADII_KM
        .iter()
        .map(|&r| {
            (
                r,
                d.iter()
                    .zip(p)
                    .filter(|(d, _)| **d <= r)
                    .map(|(_, &p)| p as f64)
                    .sum(),
            )
        })
        .collect()
}
