//! visloc's search within cell (Kordopatis-Zilos et al., ICMR 2021), as the official
//! `inference.py` does it: the retrieval embedding against the background images of the top
//! cell (dot products), the top k, DBSCAN on their locations (eps 1 km, haversine with R =
//! 6371 km, min_samples 1), and the mean of the largest cluster's unit vectors turned back
//! into lat/lon. A cell without background images keeps its centre.
//!
//! Files as published: the background collection is HDF5 with `features` (n, D) and
//! `labels` (n, 2: lat, lon in degrees); only the rows of the top cell are read. The cells
//! assignments are a pickle of a plain dict {cell: set of row indices}, read as data.
//!
//! Ties: the official code sorts with numpy's default (unstable) argsort over Python's set
//! order, which depends on the machine and the pickle. Here the rows of a cell are taken in
//! ascending index order and sorted stably by descending similarity, so ties go to the lower
//! index, on every machine.

use crate::error::{Error, Result};
use crate::model::geo::haversine_km;
use serde::Serialize;
use serde_pickle::{HashableValue, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The official defaults: top-k neighbours 10, DBSCAN eps 1 km.
pub const TOP_K: usize = 10;
pub const EPS_KM: f64 = 1.0;

fn bad(path: &Path, what: impl std::fmt::Display, fix: &str) -> Error {
    Error::Input(format!("{}: {what}; {fix}", path.display()))
}

/// The cells assignments: cell → background rows, ascending.
pub struct Assignments {
    pub cells: HashMap<usize, Vec<usize>>,
    pub path: PathBuf,
}

/// Deepest container nesting read from a pickle (`pickle_depth`).
const MAX_NESTING: usize = 64;

const PKL_FIX: &str =
    "give visloc's cells_assignments.pkl (a pickled dict of int cell → set of int row indices)";

impl Assignments {
    pub fn open(path: &Path) -> Result<Assignments> {
        let bytes =
            std::fs::read(path).map_err(|e| bad(path, format!("cannot read it ({e})"), PKL_FIX))?;
        Self::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Assignments> {
        // what serde-pickle cannot take without crashing, found first: deep nesting (it
        // recurses) and floats (its set ordering panics on NaN); a cells table has neither
        let seen = crate::model::pickle_depth::walk(bytes);
        if seen.depth > MAX_NESTING {
            let depth = seen.depth;
            return Err(bad(
                path,
                format!("nests containers {depth} deep (a cells table nests 2)"),
                PKL_FIX,
            ));
        }
        if seen.floats {
            return Err(bad(path, "holds floating-point numbers", PKL_FIX));
        }
        // data only: a global (a class or function) is an error, never called
        // and a panic of the parser on anything else is this file's error, not a crash
        let parsed = std::panic::catch_unwind(|| {
            serde_pickle::value_from_slice(bytes, serde_pickle::DeOptions::new())
        })
        .map_err(|_| {
            bad(
                path,
                "made the pickle parser fail (reported above)",
                PKL_FIX,
            )
        })?;
        let v =
            parsed.map_err(|e| bad(path, format!("is not a readable pickle ({e})"), PKL_FIX))?;
        let Value::Dict(d) = v else {
            return Err(bad(path, "holds something other than a dict", PKL_FIX));
        };
        let int = |h: &HashableValue| match h {
            HashableValue::I64(i) if *i >= 0 => Some(*i as usize),
            _ => None,
        };
        let mut cells = HashMap::with_capacity(d.len());
        for (k, v) in d {
            let cell = int(&k).ok_or_else(|| {
                bad(
                    path,
                    format!("has the key {k:?}, not a cell index"),
                    PKL_FIX,
                )
            })?;
            // a set as pickled (EMPTY_SET/ADDITEMS), or a list or tuple of the same
            let items: Vec<HashableValue> = match v {
                Value::Set(s) | Value::FrozenSet(s) => s.into_iter().collect(),
                Value::List(l) | Value::Tuple(l) => l
                    .into_iter()
                    .map(Value::into_hashable)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| {
                        bad(
                            path,
                            format!("cell {cell} holds a list, not row indices"),
                            PKL_FIX,
                        )
                    })?,
                other => {
                    return Err(bad(
                        path,
                        format!("cell {cell} maps to {}, not a set of rows", kind(&other)),
                        PKL_FIX,
                    ));
                }
            };
            let rows = items
                .iter()
                .map(|h| int(h).ok_or(h))
                .collect::<std::result::Result<Vec<usize>, _>>()
                .map_err(|h| {
                    bad(
                        path,
                        format!("cell {cell} holds {h:?}, not a row index"),
                        PKL_FIX,
                    )
                })?;
            let mut rows = rows;
            rows.sort_unstable();
            rows.dedup();
            cells.insert(cell, rows);
        }
        Ok(Assignments {
            cells,
            path: path.to_path_buf(),
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::I64(_) | Value::Int(_) => "an int",
        Value::F64(_) => "a float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "a string",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Set(_) | Value::FrozenSet(_) => "a set",
        Value::Dict(_) => "a dict",
    }
}

/// The background collection: an open HDF5 file; rows are read on demand.
pub struct Background {
    features: hdf5_metno::Dataset,
    labels: hdf5_metno::Dataset,
    /// rows (images) and feature size
    pub n: usize,
    pub d: usize,
    pub path: PathBuf,
}

/// Most features per row: a row is read whole, so a hostile file's claim is bounded before
/// anything is allocated for it (visloc's embeddings have a few thousand).
const MAX_D: usize = 1 << 16;

/// Largest HDF5 chunk read (h5py's automatic chunks stay under 1 MiB).
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// Whether the file carries HDF5's signature where the format puts it: at offset 0, or after a
/// user block, at 512, 1024, 2048, … bytes.
fn has_hdf5_signature(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let mut at = 0u64;
    while at + 8 <= len {
        let mut b = [0u8; 8];
        if f.seek(SeekFrom::Start(at)).is_err() || f.read_exact(&mut b).is_err() {
            return false;
        }
        if &b == MAGIC {
            return true;
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    false
}

const H5_FIX: &str = "give visloc's background collection (back_coll_features.hdf5: `features` (n, D) and `labels` (n, 2))";

impl Background {
    pub fn open(path: &Path) -> Result<Background> {
        if !path.is_file() {
            return Err(bad(path, "does not exist or is not a file", H5_FIX));
        }
        // what can be checked before the C library parses the file: its signature
        if !has_hdf5_signature(path) {
            return Err(bad(path, "is not an HDF5 file (no HDF5 signature)", H5_FIX));
        }
        let f = hdf5_metno::File::open(path)
            .map_err(|e| bad(path, format!("is not a readable HDF5 file ({e})"), H5_FIX))?;
        let get = |name: &str| {
            f.dataset(name)
                .map_err(|_| bad(path, format!("has no dataset `{name}`"), H5_FIX))
        };
        let (features, labels) = (get("features")?, get("labels")?);
        let (fs, ls) = (features.shape(), labels.shape());
        if fs.len() != 2 || ls.len() != 2 || ls[1] != 2 || fs[0] != ls[0] || fs[1] > MAX_D {
            return Err(bad(
                path,
                format!(
                    "has `features` {fs:?} and `labels` {ls:?}, expected (n, D) and (n, 2) with D at most {MAX_D}"
                ),
                H5_FIX,
            ));
        }
        for (name, ds) in [("features", &features), ("labels", &labels)] {
            let t = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| {
                bad(
                    path,
                    format!("`{name}` has an unreadable type ({e})"),
                    H5_FIX,
                )
            })?;
            if !matches!(t, hdf5_metno::types::TypeDescriptor::Float(_)) {
                return Err(bad(path, format!("`{name}` holds {t}, not floats"), H5_FIX));
            }
            // the C library allocates a whole chunk to read one row of it: a hostile file's
            // chunk size would be its allocation
            let chunk = ds.chunk().map_or(Some(0), |c| {
                c.iter().try_fold(t.size(), |a, &d| a.checked_mul(d))
            });
            let chunk = chunk.unwrap_or(usize::MAX);
            if chunk > MAX_CHUNK_BYTES {
                return Err(bad(
                    path,
                    format!(
                        "`{name}` is stored in chunks of {} MiB, over the {} MiB read at once",
                        chunk >> 20,
                        MAX_CHUNK_BYTES >> 20
                    ),
                    H5_FIX,
                ));
            }
        }
        Ok(Background {
            n: fs[0],
            d: fs[1],
            features,
            labels,
            path: path.to_path_buf(),
        })
    }

    fn row<T: hdf5_metno::H5Type + Copy>(
        &self,
        ds: &hdf5_metno::Dataset,
        i: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        if i >= self.n {
            return Err(bad(
                &self.path,
                format!(
                    "has {} rows, but the cells assignments name row {i}",
                    self.n
                ),
                "give the cells_assignments.pkl that belongs to this background collection",
            ));
        }
        let a = ds.read_slice_1d::<T, _>((i, ..)).map_err(|e| {
            bad(
                &self.path,
                format!("cannot read {what} row {i} ({e})"),
                H5_FIX,
            )
        })?;
        Ok(a.iter().copied().collect())
    }

    /// Row i's features (converted to f32, as the official code does).
    pub fn features(&self, i: usize) -> Result<Vec<f32>> {
        let v: Vec<f32> = self.row(&self.features, i, "the features")?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad(
                &self.path,
                format!("features row {i} holds NaN or infinity"),
                H5_FIX,
            ));
        }
        Ok(v)
    }

    /// Row i's (lat, lon) in degrees.
    pub fn location(&self, i: usize) -> Result<(f64, f64)> {
        let v: Vec<f64> = self.row(&self.labels, i, "the labels")?;
        if !v.iter().all(|x| x.is_finite()) {
            return Err(bad(
                &self.path,
                format!("labels row {i} holds NaN or infinity"),
                H5_FIX,
            ));
        }
        Ok((v[0], v[1]))
    }

    /// Read the first and last rows, features and location, as the search reads rows: what
    /// `predict`'s probe of a collection and the `hdf5` fuzz target check beyond the open.
    pub fn read_ends(&self) -> Result<()> {
        for i in [0, self.n.saturating_sub(1)]
            .into_iter()
            .filter(|&i| i < self.n)
        {
            self.features(i)?;
            self.location(i)?;
        }
        Ok(())
    }
}

/// Which of the two the prediction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// the mean of the largest cluster of the top-k neighbours
    Cluster,
    /// the cell has no background images: its centre
    CellCentre,
}

/// The search-within-cell prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub lat: f64,
    pub lon: f64,
    pub method: Method,
    pub cell: usize,
    /// background images in the cell
    pub cell_images: usize,
    /// the top-k rows, best first, with their similarity
    pub neighbours: Vec<usize>,
    pub similarities: Vec<f32>,
    /// the largest cluster's rows, in rank order
    pub cluster: Vec<usize>,
}

/// Search the background images of `cell` with `embedding` (official defaults: k = 10,
/// eps = 1 km). `centre` is the cell's centre, used when the cell has no images.
pub fn search_within_cell(
    embedding: &[f32],
    cell: usize,
    centre: (f64, f64),
    bg: &Background,
    asg: &Assignments,
    k: usize,
    eps_km: f64,
) -> Result<Found> {
    let rows = asg.cells.get(&cell).map(Vec::as_slice).unwrap_or(&[]);
    if rows.is_empty() {
        return Ok(Found {
            lat: centre.0,
            lon: centre.1,
            method: Method::CellCentre,
            cell,
            cell_images: 0,
            neighbours: vec![],
            similarities: vec![],
            cluster: vec![],
        });
    }
    if bg.d != embedding.len() {
        return Err(bad(
            &bg.path,
            format!(
                "has {}-d features, but the model's embedding is {}-d",
                bg.d,
                embedding.len()
            ),
            "give the background collection made with this model's retrieval head",
        ));
    }
    // float32 dot products, as numpy's sgemv
    let mut sims = Vec::with_capacity(rows.len());
    for &r in rows {
        let f = bg.features(r)?;
        sims.push(f.iter().zip(embedding).map(|(a, b)| a * b).sum::<f32>());
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]));
    order.truncate(k.max(1));
    let neighbours: Vec<usize> = order.iter().map(|&i| rows[i]).collect();
    let similarities: Vec<f32> = order.iter().map(|&i| sims[i]).collect();
    let points = neighbours
        .iter()
        .map(|&r| bg.location(r))
        .collect::<Result<Vec<_>>>()?;
    let members = largest_cluster(&points, eps_km);
    let (lat, lon) = mean_location(&members.iter().map(|&i| points[i]).collect::<Vec<_>>());
    Ok(Found {
        lat,
        lon,
        method: Method::Cluster,
        cell,
        cell_images: rows.len(),
        cluster: members.iter().map(|&i| neighbours[i]).collect(),
        neighbours,
        similarities,
    })
}

/// DBSCAN with min_samples 1 (every point is a core point): the connected components of
/// "within eps km" (inclusive), numbered as scikit-learn numbers them (by their best-ranked
/// point). The largest wins; among equal sizes the lowest label (a stable sort, largest
/// first, as the official code does). Returns its points' indices in rank order.
pub fn largest_cluster(points: &[(f64, f64)], eps_km: f64) -> Vec<usize> {
    let n = points.len();
    let mut label = vec![usize::MAX; n];
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if label[start] != usize::MAX {
            continue;
        }
        let c = clusters.len();
        label[start] = c;
        let mut stack = vec![start];
        let mut members = vec![];
        while let Some(p) = stack.pop() {
            members.push(p);
            for q in 0..n {
                if label[q] == usize::MAX
                    && haversine_km(points[p].0, points[p].1, points[q].0, points[q].1) <= eps_km
                {
                    label[q] = c;
                    stack.push(q);
                }
            }
        }
        members.sort_unstable();
        clusters.push(members);
    }
    let mut best = 0;
    for (c, m) in clusters.iter().enumerate() {
        if m.len() > clusters[best].len() {
            best = c;
        }
    }
    clusters.swap_remove(best)
}

/// The mean of the points' unit vectors, not renormalised, back to (lat, lon) in degrees:
/// lat = asin(z̄), lon = atan2(ȳ, x̄) (the official `cart_to_latlon`).
pub fn mean_location(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (mut x, mut y, mut z) = (0.0, 0.0, 0.0);
    for &(lat, lon) in points {
        let (p, l) = (lat.to_radians(), lon.to_radians());
        x += p.cos() * l.cos();
        y += p.cos() * l.sin();
        z += p.sin();
    }
    let (x, y, z) = (x / n, y / n, z / n);
    (z.asin().to_degrees(), y.atan2(x).to_degrees())
}
