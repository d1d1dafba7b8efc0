//! Python bindings of the high-utility itemset mining engine (`huim_engine`).
//!
//! The Python package `include/mining` wraps this module; see `docs/mining.md`.

pub mod db;
pub mod mine;

use db::{Db, Dec, Names};
use mine::{MineError, Output, Params, Stats};
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyString};
use std::io::Write;
use std::time::Instant;

create_exception!(huim_engine, InputError, PyValueError, "Malformed input (file, line, problem).");
create_exception!(
    huim_engine,
    TooManyPatterns,
    PyValueError,
    "The search found more patterns than max_patterns allows."
);
create_exception!(huim_engine, UtilityOverflow, PyValueError, "A utility exceeds the exact 64-bit range.");

fn value_err(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

/// Exact value of a Python int / Decimal / str number.
fn to_dec(obj: &Bound<'_, PyAny>) -> PyResult<Dec> {
    if obj.is_instance_of::<PyFloat>() {
        return Err(PyTypeError::new_err(format!(
            "binary floats are not accepted ({}); use int or decimal.Decimal",
            obj.repr()?
        )));
    }
    if obj.is_instance_of::<PyInt>() {
        let v: i128 = obj
            .extract()
            .map_err(|_| PyErr::new::<UtilityOverflow, _>(format!("integer {} exceeds 128 bits", obj)))?;
        return Ok(Dec { mant: v, scale: 0 });
    }
    let s = obj.str()?;
    let s = s.to_str()?;
    Dec::parse(s).map_err(value_err)
}

fn name_ranks(db: &Db) -> Vec<u32> {
    let n = db.n_items();
    let mut ids: Vec<u32> = (0..n as u32).collect();
    match &db.names {
        Names::Ints(v) => ids.sort_unstable_by_key(|&i| v[i as usize]),
        Names::Strs(v) => ids.sort_unstable_by(|&a, &b| v[a as usize].cmp(&v[b as usize])),
    }
    let mut rank = vec![0u32; n];
    for (r, &i) in ids.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    rank
}

/// A transaction database being built (from an SPMF file, or batch by batch from Python).
#[pyclass(module = "huim_engine")]
pub struct Engine {
    db: Db,
    load_seconds: f64,
}

/// Result of one search.
#[pyclass(module = "huim_engine")]
pub struct MineResult {
    out: Output,
    stats: Stats,
    /// per pattern: support count of its most frequent item (for all-confidence)
    names_text: Vec<u8>,
    names_off: Vec<u32>,
    item_sup: Vec<u64>,
    scale: u32,
    mine_seconds: f64,
    algorithm: &'static str,
}

fn run_mine(db: &Db, p: &Params) -> Result<(Output, Stats), MineError> {
    let rank = name_ranks(db);
    mine::mine(&db.items, &db.utils, &db.offsets, db.n_items(), &rank, p)
}

impl Engine {
    fn add_one(
        &mut self,
        idx: usize,
        items: &Bound<'_, PyAny>,
        quantities: &Bound<'_, PyAny>,
        unit_utilities: &Bound<'_, PyAny>,
        entries: &mut Vec<(u32, Dec)>,
    ) -> PyResult<()> {
        let ctx = |m: String| value_err(format!("transaction {}: {}", idx, m));
        if items.is_instance_of::<PyString>() {
            return Err(ctx("items must be a sequence of strings, not a string".into()));
        }
        let n = items.len()?;
        let nq = quantities.len()?;
        let nu = unit_utilities.len()?;
        if n != nq || n != nu {
            return Err(ctx(format!(
                "{} items, {} quantities and {} unit_utilities (counts must match)",
                n, nq, nu
            )));
        }
        entries.clear();
        let mut it_i = items.try_iter()?;
        let mut it_q = quantities.try_iter()?;
        let mut it_u = unit_utilities.try_iter()?;
        for _ in 0..n {
            let name_obj = it_i.next().unwrap()?;
            let name: String = name_obj.extract().map_err(|_| {
                PyTypeError::new_err(format!("transaction {}: item {} is not a str", idx, name_obj))
            })?;
            let q = to_dec(&it_q.next().unwrap()?).map_err(|e| add_ctx(e, idx, "quantity"))?;
            let u = to_dec(&it_u.next().unwrap()?).map_err(|e| add_ctx(e, idx, "unit_utility"))?;
            let d = q.mul(u).map_err(|m| PyErr::new::<UtilityOverflow, _>(format!("transaction {}: {}", idx, m)))?;
            if d.mant < 0 {
                return Err(ctx(format!(
                    "item {:?}: negative utility (quantity x unit_utility < 0) is not supported",
                    name
                )));
            }
            let id = self.db.intern_str(&name);
            entries.push((id, d));
        }
        self.db
            .push_transaction(entries)
            .map_err(|m| PyErr::new::<UtilityOverflow, _>(format!("transaction {}: {}", idx, m)))
    }
}

fn add_ctx(e: PyErr, idx: usize, field: &str) -> PyErr {
    Python::attach(|py| {
        let msg = format!("transaction {}: {}: {}", idx, field, e.value(py));
        if e.is_instance_of::<PyTypeError>(py) {
            PyTypeError::new_err(msg)
        } else if e.is_instance_of::<UtilityOverflow>(py) {
            PyErr::new::<UtilityOverflow, _>(msg)
        } else {
            value_err(msg)
        }
    })
}

#[pymethods]
impl Engine {
    #[new]
    fn new() -> Self {
        Engine { db: Db::new_strs(), load_seconds: 0.0 }
    }

    /// Read an SPMF utility file (`items:TU:utilities`; gzip detected by its magic bytes).
    #[staticmethod]
    fn from_spmf(py: Python<'_>, path: String) -> PyResult<Engine> {
        let t0 = Instant::now();
        let res = py.detach(|| -> Result<Db, (u64, String)> {
            let data = db::read_file_bytes(&path).map_err(|e| (0u64, format!("cannot read file: {}", e)))?;
            db::parse_spmf(&data).map_err(|e| (e.line, e.problem))
        });
        match res {
            Ok(db) => Ok(Engine { db, load_seconds: t0.elapsed().as_secs_f64() }),
            Err((line, problem)) => {
                let msg = if line > 0 {
                    format!("{}, line {}: {}", path, line, problem)
                } else {
                    format!("{}: {}", path, problem)
                };
                Err(PyErr::new::<InputError, _>((msg, path, line, problem)))
            }
        }
    }

    /// Add one transaction: item names (str), quantities and unit utilities (int, Decimal or str).
    fn add(
        &mut self,
        items: &Bound<'_, PyAny>,
        quantities: &Bound<'_, PyAny>,
        unit_utilities: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let t0 = Instant::now();
        let mut entries = Vec::new();
        let idx = self.db.n_transactions() + 1;
        let r = self.add_one(idx, items, quantities, unit_utilities, &mut entries);
        self.load_seconds += t0.elapsed().as_secs_f64();
        r
    }

    /// Add many rows, each `(items, quantities, unit_utilities)` (e.g. a batch of DB rows).
    /// Returns the number of rows added.
    fn add_rows(&mut self, rows: &Bound<'_, PyAny>) -> PyResult<usize> {
        let t0 = Instant::now();
        let mut entries = Vec::new();
        let mut n = 0;
        for row in rows.try_iter()? {
            let row = row?;
            let idx = self.db.n_transactions() + 1;
            let len = row.len()?;
            if len < 3 {
                return Err(value_err(format!(
                    "transaction {}: a row must be (items, quantities, unit_utilities), got {} fields",
                    idx, len
                )));
            }
            let a = row.get_item(0)?;
            let b = row.get_item(1)?;
            let c = row.get_item(2)?;
            self.add_one(idx, &a, &b, &c, &mut entries)?;
            n += 1;
        }
        self.load_seconds += t0.elapsed().as_secs_f64();
        Ok(n)
    }

    /// Add transactions given flat: `items_flat[offsets[t]:offsets[t+1]]` is transaction t
    /// (`len(offsets) == n + 1`), with parallel flat quantities and unit utilities.
    fn add_flat(
        &mut self,
        items_flat: Vec<String>,
        offsets: Vec<usize>,
        quantities_flat: &Bound<'_, PyAny>,
        unit_utilities_flat: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let t0 = Instant::now();
        let n = items_flat.len();
        if quantities_flat.len()? != n || unit_utilities_flat.len()? != n {
            return Err(value_err(format!(
                "items_flat has {} values but quantities_flat {} and unit_utilities_flat {}",
                n,
                quantities_flat.len()?,
                unit_utilities_flat.len()?
            )));
        }
        if offsets.is_empty() || offsets[0] != 0 || *offsets.last().unwrap() != n {
            return Err(value_err("offsets must start at 0 and end at len(items_flat)".into()));
        }
        if offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(value_err("offsets must be non-decreasing".into()));
        }
        let q: Vec<Dec> = quantities_flat
            .try_iter()?
            .map(|o| o.and_then(|o| to_dec(&o)))
            .collect::<PyResult<_>>()?;
        let u: Vec<Dec> = unit_utilities_flat
            .try_iter()?
            .map(|o| o.and_then(|o| to_dec(&o)))
            .collect::<PyResult<_>>()?;
        let mut entries = Vec::new();
        for w in offsets.windows(2) {
            let idx = self.db.n_transactions() + 1;
            entries.clear();
            for j in w[0]..w[1] {
                let d = q[j]
                    .mul(u[j])
                    .map_err(|m| PyErr::new::<UtilityOverflow, _>(format!("transaction {}: {}", idx, m)))?;
                if d.mant < 0 {
                    return Err(value_err(format!(
                        "transaction {}: item {:?}: negative utility is not supported",
                        idx, items_flat[j]
                    )));
                }
                let id = self.db.intern_str(&items_flat[j]);
                entries.push((id, d));
            }
            self.db
                .push_transaction(&mut entries)
                .map_err(|m| PyErr::new::<UtilityOverflow, _>(format!("transaction {}: {}", idx, m)))?;
        }
        self.load_seconds += t0.elapsed().as_secs_f64();
        Ok(offsets.len() - 1)
    }

    #[getter]
    fn n_transactions(&self) -> usize {
        self.db.n_transactions()
    }
    #[getter]
    fn n_items(&self) -> usize {
        self.db.n_items()
    }
    /// Decimal places of the stored (scaled) utilities.
    #[getter]
    fn scale(&self) -> u32 {
        self.db.scale
    }
    #[getter]
    fn load_seconds(&self) -> f64 {
        self.load_seconds
    }
    /// Total utility (scaled integer), checked.
    fn total_utility(&self) -> PyResult<u128> {
        let mut s: u128 = 0;
        for &u in &self.db.utils {
            s += u as u128;
        }
        Ok(s)
    }

    fn item_names(&self) -> Vec<String> {
        (0..self.db.n_items() as u32).map(|i| self.db.name_string(i)).collect()
    }

    /// Search. `min_utility`: scaled integer (>= 0); `min_support_count` >= 1;
    /// `max_pattern_length`: None or >= 1; `projection`: "auto" | "scan" | "index".
    #[pyo3(signature = (min_utility, min_support_count=1, max_pattern_length=None, use_pruning=true, max_patterns=None, projection="auto", required_item=None))]
    fn mine(
        &self,
        py: Python<'_>,
        min_utility: u64,
        min_support_count: u64,
        max_pattern_length: Option<usize>,
        use_pruning: bool,
        max_patterns: Option<u64>,
        projection: &str,
        required_item: Option<String>,
    ) -> PyResult<MineResult> {
        if let Some(0) = max_pattern_length {
            return Err(value_err("max_pattern_length must be at least 1".into()));
        }
        let proj = match projection {
            "auto" => 0,
            "scan" => 1,
            "index" => 2,
            _ => return Err(value_err(format!("unknown projection {:?}", projection))),
        };
        let p = Params {
            minutil: min_utility,
            minsup: min_support_count.max(1),
            maxlen: max_pattern_length.unwrap_or(usize::MAX),
            pruning: use_pruning,
            max_patterns: max_patterns.unwrap_or(u64::MAX),
            projection: proj,
            required: required_item.map(|name| self.db.lookup(&name).unwrap_or(u32::MAX)),
        };
        let t0 = Instant::now();
        let db = &self.db;
        let r = py.detach(|| run_mine(db, &p));
        let secs = t0.elapsed().as_secs_f64();
        match r {
            Ok((out, stats)) => {
                // names as text for fast writing, supports of single items
                let mut names_text = Vec::new();
                let mut names_off = vec![0u32];
                let mut ib = itoa::Buffer::new();
                for i in 0..db.n_items() {
                    match &db.names {
                        Names::Ints(v) => names_text.extend_from_slice(ib.format(v[i]).as_bytes()),
                        Names::Strs(v) => names_text.extend_from_slice(v[i].as_bytes()),
                    }
                    names_off.push(names_text.len() as u32);
                }
                let mut item_sup = vec![0u64; db.n_items()];
                for &i in &db.items {
                    item_sup[i as usize] += 1;
                }
                Ok(MineResult {
                    out,
                    stats,
                    names_text,
                    names_off,
                    item_sup,
                    scale: db.scale,
                    mine_seconds: secs,
                    algorithm: match proj {
                        1 => "efim",
                        2 => "efim-vertical",
                        _ => "efim-hybrid",
                    },
                })
            }
            Err(MineError::TooManyPatterns(n)) => Err(PyErr::new::<TooManyPatterns, _>(format!(
                "the search found more than max_patterns={} patterns; raise max_patterns (or raise \
                 min_utility / min_support, or lower max_pattern_length)",
                n
            ))),
            Err(MineError::Overflow(m)) => Err(PyErr::new::<UtilityOverflow, _>(m)),
        }
    }
}

fn write_scaled(buf: &mut Vec<u8>, v: u64, scale: u32, ib: &mut itoa::Buffer) {
    if scale == 0 {
        buf.extend_from_slice(ib.format(v).as_bytes());
        return;
    }
    let f = 10u64.pow(scale);
    let ip = v / f;
    let mut fp = v % f;
    buf.extend_from_slice(ib.format(ip).as_bytes());
    if fp == 0 {
        return;
    }
    let mut digits = scale;
    while fp % 10 == 0 {
        fp /= 10;
        digits -= 1;
    }
    buf.push(b'.');
    let s = ib.format(fp);
    for _ in s.len()..digits as usize {
        buf.push(b'0');
    }
    buf.extend_from_slice(s.as_bytes());
}

impl MineResult {
    fn render(&self) -> Vec<u8> {
        let o = &self.out;
        let mut buf: Vec<u8> = Vec::with_capacity(o.items.len() * 6 + o.len() * 28);
        let mut ib = itoa::Buffer::new();
        for p in 0..o.len() {
            let (s, e) = (o.offsets[p] as usize, o.offsets[p + 1] as usize);
            for (k, &i) in o.items[s..e].iter().enumerate() {
                if k > 0 {
                    buf.push(b' ');
                }
                let (a, b) = (self.names_off[i as usize] as usize, self.names_off[i as usize + 1] as usize);
                buf.extend_from_slice(&self.names_text[a..b]);
            }
            buf.extend_from_slice(b" #UTIL: ");
            write_scaled(&mut buf, o.utils[p], self.scale, &mut ib);
            buf.extend_from_slice(b" #SUP: ");
            buf.extend_from_slice(ib.format(o.sups[p]).as_bytes());
            buf.push(b'\n');
        }
        buf
    }
}

#[pymethods]
impl MineResult {
    fn __len__(&self) -> usize {
        self.out.len()
    }

    /// Write the patterns, SPMF style (`item item ... #UTIL: u #SUP: n`), to `path` (None: stdout).
    #[pyo3(signature = (path=None))]
    fn write(&self, py: Python<'_>, path: Option<String>) -> PyResult<()> {
        py.detach(|| -> std::io::Result<()> {
            let buf = self.render();
            match &path {
                Some(p) => std::fs::write(p, &buf),
                None => {
                    let out = std::io::stdout();
                    let mut lock = out.lock();
                    lock.write_all(&buf)?;
                    lock.flush()
                }
            }
        })
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot write output: {}", e)))
    }

    /// The SPMF-style text as bytes.
    fn to_bytes(&self, py: Python<'_>) -> pyo3::Py<pyo3::types::PyBytes> {
        let buf = self.render();
        pyo3::types::PyBytes::new(py, &buf).unbind()
    }

    /// Flat arrays: (items_flat, offsets, utilities, support_counts, max_item_support_counts).
    /// Items are load ids (index into `Engine.item_names()`), sorted by name inside a pattern.
    fn arrays(&self) -> (Vec<u32>, Vec<u32>, Vec<u64>, Vec<u64>, Vec<u64>) {
        let o = &self.out;
        let mut maxsup = Vec::with_capacity(o.len());
        for p in 0..o.len() {
            let (s, e) = (o.offsets[p] as usize, o.offsets[p + 1] as usize);
            let m = o.items[s..e].iter().map(|&i| self.item_sup[i as usize]).max().unwrap_or(0);
            maxsup.push(m);
        }
        (o.items.clone(), o.offsets.clone(), o.utils.clone(), o.sups.clone(), maxsup)
    }

    #[getter]
    fn scale(&self) -> u32 {
        self.scale
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let s = &self.stats;
        d.set_item("algorithm", self.algorithm)?;
        d.set_item("n_transactions", s.n_transactions)?;
        d.set_item("n_items", s.n_items)?;
        d.set_item("n_promising_items", s.n_promising_items)?;
        d.set_item("n_merged_transactions", s.n_root_transactions)?;
        d.set_item("candidates", s.candidates)?;
        d.set_item("nodes_indexed", s.nodes_indexed)?;
        d.set_item("nodes_scanned", s.nodes_scanned)?;
        d.set_item("max_depth", s.max_depth)?;
        d.set_item("patterns", s.patterns)?;
        d.set_item("mine_seconds", self.mine_seconds)?;
        d.set_item("scale", self.scale)?;
        Ok(d)
    }
}

#[pymodule]
fn huim_engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<MineResult>()?;
    m.add("InputError", m.py().get_type::<InputError>())?;
    m.add("TooManyPatterns", m.py().get_type::<TooManyPatterns>())?;
    m.add("UtilityOverflow", m.py().get_type::<UtilityOverflow>())?;
    Ok(())
}
