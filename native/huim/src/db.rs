//! Transaction database: dense item ids, exact scaled-integer utilities, SPMF reader.
//!
//! Utilities are stored as `u64` values scaled by `10^scale` (scale = number of decimal places
//! needed by the data, chosen from the data and raised on the fly when a value with more decimal
//! places arrives; every rescale is overflow-checked). All arithmetic is checked: the total
//! utility of the database must fit in a `u64`; since every sum computed by the search (pattern
//! utilities, local and sub-tree utility bounds, TWU) is bounded by that total, the search itself
//! cannot overflow once the database has been accepted.

use rustc_hash::FxHashMap;
use std::io::Read;

/// Item names: integers (SPMF input, printed as integers, ordered numerically) or strings
/// (API input, ordered by Unicode code point).
pub enum Names {
    Ints(Vec<u64>),
    Strs(Vec<String>),
}

pub struct Db {
    pub names: Names,
    /// Dense item ids (load order), flat.
    pub items: Vec<u32>,
    /// Scaled utilities, flat, parallel to `items`.
    pub utils: Vec<u64>,
    /// `offsets[t]..offsets[t+1]` is transaction `t`; `offsets.len() == n_transactions + 1`.
    pub offsets: Vec<u64>,
    /// Number of decimal places of the stored utilities.
    pub scale: u32,
    str_map: FxHashMap<String, u32>,
    int_map: FxHashMap<u64, u32>,
}

impl Db {
    pub fn new_strs() -> Db {
        Db {
            names: Names::Strs(Vec::new()),
            items: Vec::new(),
            utils: Vec::new(),
            offsets: vec![0],
            scale: 0,
            str_map: FxHashMap::default(),
            int_map: FxHashMap::default(),
        }
    }

    pub fn new_ints() -> Db {
        let mut d = Db::new_strs();
        d.names = Names::Ints(Vec::new());
        d
    }

    pub fn n_transactions(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn n_items(&self) -> usize {
        match &self.names {
            Names::Ints(v) => v.len(),
            Names::Strs(v) => v.len(),
        }
    }

    /// Dense id of an item name (integer names: the decimal text of the integer).
    pub fn lookup(&self, name: &str) -> Option<u32> {
        match &self.names {
            Names::Strs(_) => self.str_map.get(name).copied(),
            Names::Ints(_) => name.parse::<u64>().ok().and_then(|x| self.int_map.get(&x).copied()),
        }
    }

    pub fn name_string(&self, id: u32) -> String {
        match &self.names {
            Names::Ints(v) => v[id as usize].to_string(),
            Names::Strs(v) => v[id as usize].clone(),
        }
    }

    pub fn intern_str(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.str_map.get(s) {
            return id;
        }
        let names = match &mut self.names {
            Names::Strs(v) => v,
            Names::Ints(_) => unreachable!("string item in an integer-named database"),
        };
        let id = names.len() as u32;
        names.push(s.to_owned());
        self.str_map.insert(s.to_owned(), id);
        id
    }

    #[inline]
    pub fn intern_int(&mut self, x: u64) -> u32 {
        let names = match &mut self.names {
            Names::Ints(v) => v,
            Names::Strs(_) => unreachable!(),
        };
        *self.int_map.entry(x).or_insert_with(|| {
            names.push(x);
            (names.len() - 1) as u32
        })
    }

    /// Raise the scale of every stored utility to `new_scale` (checked).
    pub fn rescale(&mut self, new_scale: u32) -> Result<(), String> {
        if new_scale <= self.scale {
            return Ok(());
        }
        let f = pow10(new_scale - self.scale)
            .ok_or_else(|| format!("utility scale 10^{} does not fit in 64 bits", new_scale))?;
        for u in self.utils.iter_mut() {
            *u = u.checked_mul(f).ok_or_else(|| {
                format!(
                    "utility overflow: rescaling to {} decimal places exceeds the 64-bit range",
                    new_scale
                )
            })?;
        }
        self.scale = new_scale;
        Ok(())
    }

    /// Append one transaction given as (dense id, exact value) pairs; duplicate items in one
    /// transaction are merged (their utilities added).
    pub fn push_transaction(&mut self, entries: &mut Vec<(u32, Dec)>) -> Result<(), String> {
        // bring everything to a common scale
        let mut need = self.scale;
        for (_, d) in entries.iter() {
            if d.scale > need {
                need = d.scale;
            }
        }
        self.rescale(need)?;
        entries.sort_unstable_by_key(|e| e.0);
        let start = self.items.len();
        for (id, d) in entries.iter() {
            let v = d.to_scaled_u64(self.scale)?;
            if self.items.len() > start && *self.items.last().unwrap() == *id {
                let last = self.utils.last_mut().unwrap();
                *last = last
                    .checked_add(v)
                    .ok_or_else(|| "utility overflow (64-bit) when merging a repeated item".to_string())?;
            } else {
                self.items.push(*id);
                self.utils.push(v);
            }
        }
        self.offsets.push(self.items.len() as u64);
        Ok(())
    }
}

pub fn pow10(e: u32) -> Option<u64> {
    10u64.checked_pow(e)
}

/// Exact decimal: mantissa * 10^-scale.
#[derive(Clone, Copy, Debug)]
pub struct Dec {
    pub mant: i128,
    pub scale: u32,
}

impl Dec {
    pub fn normalize(mut self) -> Dec {
        while self.scale > 0 && self.mant % 10 == 0 {
            self.mant /= 10;
            self.scale -= 1;
        }
        self
    }

    pub fn mul(self, o: Dec) -> Result<Dec, String> {
        let m = self
            .mant
            .checked_mul(o.mant)
            .ok_or_else(|| "utility overflow: quantity x unit_utility exceeds 128 bits".to_string())?;
        Ok(Dec { mant: m, scale: self.scale + o.scale }.normalize())
    }

    pub fn to_scaled_u64(self, scale: u32) -> Result<u64, String> {
        if self.mant < 0 {
            return Err("negative utility (quantity x unit_utility < 0) is not supported".into());
        }
        debug_assert!(scale >= self.scale);
        let f = 10i128
            .checked_pow(scale - self.scale)
            .ok_or_else(|| "utility overflow when scaling".to_string())?;
        let v = self
            .mant
            .checked_mul(f)
            .ok_or_else(|| "utility overflow when scaling".to_string())?;
        u64::try_from(v).map_err(|_| format!("utility {} exceeds the 64-bit range after scaling", v))
    }

    /// Parse the text form of an int or a `decimal.Decimal` (`-1.50`, `1E+3`, `2.5e-7`).
    pub fn parse(s: &str) -> Result<Dec, String> {
        let b = s.trim().as_bytes();
        let bad = || format!("'{}' is not a finite decimal number", s);
        let mut i = 0;
        let mut neg = false;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            neg = b[i] == b'-';
            i += 1;
        }
        let mut mant: i128 = 0;
        let mut frac: i64 = 0;
        let mut digits = 0;
        let mut seen_dot = false;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() {
                mant = mant
                    .checked_mul(10)
                    .and_then(|m| m.checked_add((c - b'0') as i128))
                    .ok_or_else(|| format!("'{}' has too many digits (128-bit overflow)", s))?;
                digits += 1;
                if seen_dot {
                    frac += 1;
                }
            } else if c == b'.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return Err(bad());
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut eneg = false;
            if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
                eneg = b[i] == b'-';
                i += 1;
            }
            let st = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = exp.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
                i += 1;
            }
            if st == i {
                return Err(bad());
            }
            if eneg {
                exp = -exp;
            }
        }
        if i != b.len() {
            return Err(bad());
        }
        if neg {
            mant = -mant;
        }
        let mut scale = frac - exp;
        if scale < 0 {
            if mant != 0 {
                let f = 10i128
                    .checked_pow((-scale) as u32)
                    .ok_or_else(|| format!("'{}' is too large (128-bit overflow)", s))?;
                mant = mant
                    .checked_mul(f)
                    .ok_or_else(|| format!("'{}' is too large (128-bit overflow)", s))?;
            }
            scale = 0;
        }
        let d = Dec { mant, scale: 0 };
        if mant == 0 {
            return Ok(d);
        }
        // strip trailing zeros of the fractional part
        let mut d = Dec { mant, scale: scale.min(u32::MAX as i64) as u32 };
        d = d.normalize();
        if d.scale > 38 {
            return Err(format!("'{}' has more than 38 decimal places", s));
        }
        Ok(d)
    }
}

/// A problem in an input file.
pub struct InputErr {
    pub line: u64,
    pub problem: String,
}

fn err(line: u64, problem: String) -> InputErr {
    InputErr { line, problem }
}

pub fn read_file_bytes(path: &str) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

#[inline]
fn parse_u64(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in tok {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

fn show(tok: &[u8]) -> String {
    let s = String::from_utf8_lossy(tok);
    if s.chars().count() > 40 {
        let t: String = s.chars().take(40).collect();
        format!("{}...", t)
    } else {
        s.into_owned()
    }
}

#[inline]
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Split a field into whitespace-separated tokens.
fn tokens(f: &[u8]) -> impl Iterator<Item = &[u8]> {
    f.split(|&c| is_ws(c)).filter(|t| !t.is_empty())
}

/// Parse SPMF utility format: `items:TU:utilities` per line.
pub fn parse_spmf(data: &[u8]) -> Result<Db, InputErr> {
    let mut db = Db::new_ints();
    db.items.reserve(data.len() / 6);
    db.utils.reserve(data.len() / 6);
    let mut last_seen: Vec<u64> = Vec::new(); // dense id -> line number of last occurrence
    let mut lineno: u64 = 0;
    let mut ids: Vec<u32> = Vec::with_capacity(64);
    for raw_line in data.split(|&c| c == b'\n') {
        lineno += 1;
        let mut line = raw_line;
        if let Some((&b'\r', rest)) = line.split_last() {
            line = rest;
        }
        // trim
        let mut s = 0;
        let mut e = line.len();
        while s < e && (is_ws(line[s]) || line[s] == b'\r') {
            s += 1;
        }
        while e > s && (is_ws(line[e - 1]) || line[e - 1] == b'\r') {
            e -= 1;
        }
        let line = &line[s..e];
        if line.is_empty() || matches!(line[0], b'#' | b'%' | b'@') {
            continue;
        }
        let c1 = match line.iter().position(|&c| c == b':') {
            Some(p) => p,
            None => {
                return Err(err(
                    lineno,
                    "expected 'items:TU:utilities' but found no ':'".into(),
                ))
            }
        };
        let rest = &line[c1 + 1..];
        let c2 = match rest.iter().position(|&c| c == b':') {
            Some(p) => p,
            None => {
                return Err(err(
                    lineno,
                    "expected 'items:TU:utilities' but found only one ':'".into(),
                ))
            }
        };
        let f_items = &line[..c1];
        let f_tu = &rest[..c2];
        let f_utils = &rest[c2 + 1..];
        if f_utils.contains(&b':') {
            return Err(err(
                lineno,
                "expected 'items:TU:utilities' but found more than two ':'".into(),
            ));
        }
        ids.clear();
        for tok in tokens(f_items) {
            let x = parse_u64(tok).ok_or_else(|| {
                err(
                    lineno,
                    format!("item '{}' is not a non-negative integer", show(tok)),
                )
            })?;
            let id = db.intern_int(x);
            if (id as usize) >= last_seen.len() {
                last_seen.resize(id as usize + 1, 0);
            }
            if last_seen[id as usize] == lineno {
                return Err(err(lineno, format!("item {} appears twice", x)));
            }
            last_seen[id as usize] = lineno;
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(err(lineno, "transaction has no items".into()));
        }
        let tu_tok: Vec<&[u8]> = tokens(f_tu).collect();
        if tu_tok.len() != 1 {
            return Err(err(
                lineno,
                format!("transaction utility (TU) '{}' is not one integer", show(f_tu)),
            ));
        }
        let tu = parse_u64(tu_tok[0]).ok_or_else(|| {
            err(
                lineno,
                format!(
                    "transaction utility (TU) '{}' is not a non-negative integer",
                    show(tu_tok[0])
                ),
            )
        })?;
        let mut n_utils = 0usize;
        let mut sum: u64 = 0;
        for tok in tokens(f_utils) {
            let u = parse_u64(tok).ok_or_else(|| {
                err(
                    lineno,
                    format!("utility '{}' is not a non-negative integer", show(tok)),
                )
            })?;
            sum = sum.checked_add(u).ok_or_else(|| {
                err(lineno, "sum of utilities overflows 64 bits".into())
            })?;
            if n_utils < ids.len() {
                db.items.push(ids[n_utils]);
                db.utils.push(u);
            }
            n_utils += 1;
        }
        if n_utils != ids.len() {
            return Err(err(
                lineno,
                format!(
                    "{} items but {} utilities (counts must match)",
                    ids.len(),
                    n_utils
                ),
            ));
        }
        if sum != tu {
            return Err(err(
                lineno,
                format!(
                    "transaction utility (TU) {} does not equal the sum of the utilities {}",
                    tu, sum
                ),
            ));
        }
        db.offsets.push(db.items.len() as u64);
    }
    Ok(db)
}
