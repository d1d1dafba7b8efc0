//! The search.
//!
//! EFIM (Zida, Fournier-Viger et al., KAIS 2017) with one change that makes it a hybrid of EFIM's
//! horizontal projected databases and the vertical tid-lists of the utility-list miners
//! (HUI-Miner/FHM):
//!
//! * items renamed 0..k by TWU ascending (ties: item name), unpromising items (TWU < min_utility,
//!   or support < min_support) removed, transactions sorted in EFIM's order (reverse
//!   lexicographic) and identical transactions merged (utilities, counts and TUs added);
//! * depth-first search over prefixes P; each node holds the projected database of P (the suffixes
//!   after P's last item of the transactions containing P, with the utility of P in each);
//!   identical projected transactions are merged as they are produced;
//! * bounds per child item z, computed in one pass with utility bins: local utility lu(P, z)
//!   (secondary items: kept in the sub-tree) and sub-tree utility su(P, z) (primary items:
//!   explored). With `pruning == false`, only the TWU of P∪{z} (sum of the original transaction
//!   utilities of the transactions containing it) is used for both, the textbook bound;
//! * after the bounds, the projected database is compacted to the kept items;
//! * **vertical projection**: a node with many items to explore first builds an inverted index
//!   (item -> positions in its projected database, one counting-sort pass), so projecting on an
//!   item touches only the transactions that contain it, as a utility-list join would. EFIM
//!   scans the whole projected database once per item instead, which is what makes it slow on
//!   sparse data with many items (e.g. retail: 16k items). The choice is made per node from its
//!   statistics (items to explore, transactions, average length);
//! * `max_pattern_length` stops the recursion (the last level is computed in the bounds pass
//!   without projecting), `min_support` prunes items (support is anti-monotone) at every node.
//!
//! Output order: depth-first order of the search (items by TWU ascending, ties by name), which is
//! deterministic for a given database and parameters.

pub struct Params {
    pub minutil: u64,
    /// minimum support count, at least 1 (a pattern must occur)
    pub minsup: u64,
    /// maximum pattern length (usize::MAX = none)
    pub maxlen: usize,
    pub pruning: bool,
    /// stop with an error once this many patterns were found (u64::MAX = none)
    pub max_patterns: u64,
    /// 0 = choose per node, 1 = always scan (plain EFIM), 2 = always index
    pub projection: u8,
    /// only patterns holding this item (load id); `Some(u32::MAX)` = an unknown item (no pattern)
    pub required: Option<u32>,
}

#[derive(Default, Clone, Debug)]
pub struct Stats {
    pub n_transactions: u64,
    pub n_items: u64,
    pub n_promising_items: u64,
    pub n_root_transactions: u64,
    pub candidates: u64,
    pub nodes_indexed: u64,
    pub nodes_scanned: u64,
    pub patterns: u64,
    pub max_depth: u64,
}

/// Result: patterns with items as load ids, each pattern's items sorted by name rank.
#[derive(Default)]
pub struct Output {
    pub items: Vec<u32>,
    pub offsets: Vec<u32>,
    pub utils: Vec<u64>,
    pub sups: Vec<u64>,
}

impl Output {
    pub fn len(&self) -> usize {
        self.utils.len()
    }
}

pub enum MineError {
    TooManyPatterns(u64),
    Overflow(String),
}

#[derive(Default)]
struct Proj {
    items: Vec<u32>,
    utils: Vec<u64>,
    starts: Vec<u32>,
    prefix: Vec<u64>,
    cnt: Vec<u64>,
    tu: Vec<u64>,
}

impl Proj {
    fn clear(&mut self) {
        self.items.clear();
        self.utils.clear();
        self.starts.clear();
        self.starts.push(0);
        self.prefix.clear();
        self.cnt.clear();
        self.tu.clear();
    }
    #[inline]
    fn ntx(&self) -> usize {
        self.starts.len() - 1
    }
}

#[derive(Default)]
struct Level {
    keep: Vec<u32>,
    explore: Vec<u32>,
    /// inverted index: (tx, pos) entries grouped by explore item
    entries: Vec<(u32, u32)>,
    ranges: Vec<(u32, u32)>,
}

struct Miner<'a> {
    p: &'a Params,
    /// search id -> load id
    to_load: Vec<u32>,
    /// search id -> name rank
    rank: Vec<u32>,
    lu: Vec<u64>,
    su: Vec<u64>,
    sc: Vec<u64>,
    ut: Vec<u64>,
    mark: Vec<u32>,
    slot: Vec<u32>,
    projs: Vec<Proj>,
    levels: Vec<Level>,
    prefix: Vec<u32>,
    out: Output,
    stats: Stats,
    scratch: Vec<u32>,
    index_factor: f64,
    /// required item (search id) or NONE
    req: u32,
    /// number of prefix items equal to `req` (0 or 1)
    req_in: bool,
}

const NONE: u32 = u32::MAX;

/// Mine. `items/utils/offsets`: the database with load ids; `name_rank[load id]`: position of the
/// item's name in name order.
pub fn mine(
    items: &[u32],
    utils: &[u64],
    offsets: &[u64],
    n_items: usize,
    name_rank: &[u32],
    p: &Params,
) -> Result<(Output, Stats), MineError> {
    let ntx = offsets.len() - 1;
    if items.len() >= u32::MAX as usize || ntx >= u32::MAX as usize {
        return Err(MineError::Overflow(
            "the database has more than 2^32 item occurrences; split it".into(),
        ));
    }
    let mut stats = Stats {
        n_transactions: ntx as u64,
        n_items: n_items as u64,
        ..Default::default()
    };
    // --- transaction utilities, TWU, supports (checked: total must fit in u64)
    let mut twu = vec![0u64; n_items];
    let mut sup = vec![0u64; n_items];
    let mut tus = Vec::with_capacity(ntx);
    let mut total: u64 = 0;
    for t in 0..ntx {
        let (s, e) = (offsets[t] as usize, offsets[t + 1] as usize);
        let mut tu: u64 = 0;
        for &u in &utils[s..e] {
            tu = tu.checked_add(u).ok_or_else(|| {
                MineError::Overflow(format!("transaction {} has a utility above the 64-bit range", t + 1))
            })?;
        }
        total = total.checked_add(tu).ok_or_else(|| {
            MineError::Overflow("total utility of the database exceeds the 64-bit range".into())
        })?;
        tus.push(tu);
        for &i in &items[s..e] {
            twu[i as usize] += tu;
            sup[i as usize] += 1;
        }
    }
    // --- promising items, renamed by TWU ascending (ties by name)
    let mut prom: Vec<u32> = (0..n_items as u32)
        .filter(|&i| twu[i as usize] >= p.minutil && sup[i as usize] >= p.minsup)
        .collect();
    prom.sort_unstable_by_key(|&i| (twu[i as usize], name_rank[i as usize]));
    let k = prom.len();
    stats.n_promising_items = k as u64;
    let mut to_search = vec![NONE; n_items];
    for (s, &l) in prom.iter().enumerate() {
        to_search[l as usize] = s as u32;
    }
    let rank: Vec<u32> = prom.iter().map(|&l| name_rank[l as usize]).collect();
    let req = match p.required {
        None => NONE,
        Some(l) => {
            if (l as usize) >= n_items || to_search[l as usize] == NONE {
                // the required item is unknown or unpromising: no pattern can hold it
                stats.n_promising_items = k as u64;
                let mut out = Output::default();
                out.offsets.push(0);
                return Ok((out, stats));
            }
            to_search[l as usize]
        }
    };

    // --- root database: promising items only, renamed, sorted; transactions in EFIM order, merged
    let mut tmp: Vec<(u32, u64)> = Vec::new();
    let mut r_items: Vec<u32> = Vec::new();
    let mut r_utils: Vec<u64> = Vec::new();
    let mut r_starts: Vec<u32> = vec![0];
    let mut r_tu: Vec<u64> = Vec::new();
    for t in 0..ntx {
        let (s, e) = (offsets[t] as usize, offsets[t + 1] as usize);
        tmp.clear();
        for j in s..e {
            let si = to_search[items[j] as usize];
            if si != NONE {
                tmp.push((si, utils[j]));
            }
        }
        if tmp.is_empty() {
            continue;
        }
        tmp.sort_unstable_by_key(|x| x.0);
        for &(i, u) in &tmp {
            r_items.push(i);
            r_utils.push(u);
        }
        r_starts.push(r_items.len() as u32);
        r_tu.push(tus[t]);
    }
    let rn = r_starts.len() - 1;
    let mut order: Vec<u32> = (0..rn as u32).collect();
    {
        let sl = |t: u32| &r_items[r_starts[t as usize] as usize..r_starts[t as usize + 1] as usize];
        order.sort_unstable_by(|&a, &b| sl(a).iter().rev().cmp(sl(b).iter().rev()).then(a.cmp(&b)));
    }
    let mut root = Proj::default();
    root.clear();
    root.items.reserve(r_items.len());
    root.utils.reserve(r_items.len());
    for &t in &order {
        let (s, e) = (r_starts[t as usize] as usize, r_starts[t as usize + 1] as usize);
        let n = root.ntx();
        if n > 0 {
            let (ps, pe) = (root.starts[n - 1] as usize, root.starts[n] as usize);
            if root.items[ps..pe] == r_items[s..e] {
                for (a, b) in root.utils[ps..pe].iter_mut().zip(&r_utils[s..e]) {
                    *a += *b;
                }
                root.cnt[n - 1] += 1;
                root.tu[n - 1] += r_tu[t as usize];
                continue;
            }
        }
        root.items.extend_from_slice(&r_items[s..e]);
        root.utils.extend_from_slice(&r_utils[s..e]);
        root.starts.push(root.items.len() as u32);
        root.prefix.push(0);
        root.cnt.push(1);
        root.tu.push(r_tu[t as usize]);
    }
    drop(r_items);
    drop(r_utils);
    stats.n_root_transactions = root.ntx() as u64;

    let mut m = Miner {
        p,
        to_load: prom,
        rank,
        lu: vec![0; k],
        su: vec![0; k],
        sc: vec![0; k],
        ut: vec![0; k],
        mark: vec![0; k],
        slot: vec![NONE; k],
        projs: Vec::new(),
        levels: Vec::new(),
        prefix: Vec::new(),
        out: Output::default(),
        stats,
        scratch: Vec::new(),
        req,
        req_in: false,
        index_factor: std::env::var("HUIM_INDEX_FACTOR").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0),
    };
    m.out.offsets.push(0);
    if k == 0 {
        return Ok((m.out, m.stats));
    }
    // root bounds: keep = promising items; explore = su >= minutil (pruning) or all
    let mut lvl = Level::default();
    lvl.keep = (0..k as u32).collect();
    if p.pruning {
        for t in 0..root.ntx() {
            let (s, e) = (root.starts[t] as usize, root.starts[t + 1] as usize);
            let mut acc = 0u64;
            for j in (s..e).rev() {
                acc += root.utils[j];
                m.su[root.items[j] as usize] += acc;
            }
        }
        lvl.explore = (0..k as u32).filter(|&i| m.su[i as usize] >= p.minutil).collect();
    } else {
        lvl.explore = lvl.keep.clone();
    }
    m.levels.push(lvl);
    m.node(0, &root)?;
    m.stats.patterns = m.out.len() as u64;
    Ok((m.out, m.stats))
}

impl<'a> Miner<'a> {
    fn emit(&mut self, extra: Option<u32>, util: u64, sup: u64) -> Result<(), MineError> {
        if self.out.len() as u64 >= self.p.max_patterns {
            return Err(MineError::TooManyPatterns(self.p.max_patterns));
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.prefix);
        if let Some(x) = extra {
            self.scratch.push(x);
        }
        let rank = &self.rank;
        self.scratch.sort_unstable_by_key(|&i| rank[i as usize]);
        for &i in &self.scratch {
            self.out.items.push(self.to_load[i as usize]);
        }
        self.out.offsets.push(self.out.items.len() as u32);
        self.out.utils.push(util);
        self.out.sups.push(sup);
        Ok(())
    }

    /// Process node P (|P| == depth) whose projected database is `db`; its keep/explore lists are
    /// in `self.levels[depth]`.
    fn node(&mut self, depth: usize, db: &Proj) -> Result<(), MineError> {
        if depth as u64 > self.stats.max_depth {
            self.stats.max_depth = depth as u64;
        }
        while self.projs.len() <= depth + 1 {
            self.projs.push(Proj::default());
        }
        while self.levels.len() <= depth + 1 {
            self.levels.push(Level::default());
        }
        let mut lvl = std::mem::take(&mut self.levels[depth]);
        let ntx = db.ntx();
        let total_len = db.items.len();
        let n_explore = lvl.explore.len();
        // --- choose the projection: index when scanning once per explored item would cost more
        let use_index = match self.p.projection {
            1 => false,
            2 => true,
            _ => {
                let avg = (total_len as f64) / (ntx.max(1) as f64);
                let scan_cost = (n_explore as f64) * (ntx as f64) * (avg.log2() + 1.0);
                let index_cost = 2.0 * (total_len as f64) + (n_explore as f64);
                scan_cost > self.index_factor * index_cost
            }
        };
        if use_index {
            self.stats.nodes_indexed += 1;
            self.build_index(db, &mut lvl);
        } else {
            self.stats.nodes_scanned += 1;
        }
        let mut child = std::mem::take(&mut self.projs[depth + 1]);
        let leaf_children = depth + 2 == self.p.maxlen;
        let mut result = Ok(());
        for j in 0..n_explore {
            let e = lvl.explore[j];
            if self.req != NONE && !self.req_in && e > self.req {
                break; // items are added in increasing order: no pattern below holds the required item
            }
            child.clear();
            // ---- project on e
            let mut util: u64 = 0;
            let mut support: u64 = 0;
            {
                let mut visit = |t: usize, pos: usize, child: &mut Proj| {
                    let pu = db.prefix[t] + db.utils[pos];
                    util += pu;
                    support += db.cnt[t];
                    let end = db.starts[t + 1] as usize;
                    if pos + 1 < end {
                        let suf_i = &db.items[pos + 1..end];
                        let suf_u = &db.utils[pos + 1..end];
                        let n = child.ntx();
                        if n > 0 {
                            let (ps, pe) = (child.starts[n - 1] as usize, child.starts[n] as usize);
                            if pe - ps == suf_i.len() && child.items[ps..pe] == *suf_i {
                                for (a, b) in child.utils[ps..pe].iter_mut().zip(suf_u) {
                                    *a += *b;
                                }
                                child.prefix[n - 1] += pu;
                                child.cnt[n - 1] += db.cnt[t];
                                child.tu[n - 1] += db.tu[t];
                                return;
                            }
                        }
                        child.items.extend_from_slice(suf_i);
                        child.utils.extend_from_slice(suf_u);
                        child.starts.push(child.items.len() as u32);
                        child.prefix.push(pu);
                        child.cnt.push(db.cnt[t]);
                        child.tu.push(db.tu[t]);
                    }
                };
                if use_index {
                    let (a, b) = lvl.ranges[j];
                    for &(t, pos) in &lvl.entries[a as usize..b as usize] {
                        visit(t as usize, pos as usize, &mut child);
                    }
                } else {
                    for t in 0..ntx {
                        let (s, en) = (db.starts[t] as usize, db.starts[t + 1] as usize);
                        let sl = &db.items[s..en];
                        // items sorted ascending: skip quickly when e is out of range
                        if sl[0] > e || *sl.last().unwrap() < e {
                            continue;
                        }
                        if let Ok(off) = sl.binary_search(&e) {
                            visit(t, s + off, &mut child);
                        }
                    }
                }
            }
            self.stats.candidates += 1;
            if support < self.p.minsup {
                continue;
            }
            self.prefix.push(e);
            let outer_req_in = self.req_in;
            if e == self.req {
                self.req_in = true;
            }
            let holds = self.req == NONE || self.req_in;
            if util >= self.p.minutil && holds {
                if let Err(x) = self.emit(None, util, support) {
                    result = Err(x);
                    self.prefix.pop();
                    self.req_in = outer_req_in;
                    break;
                }
            }
            if depth + 1 < self.p.maxlen && child.ntx() > 0 {
                let r = self.expand(depth, &lvl.keep, e, &mut child, leaf_children);
                if let Err(x) = r {
                    result = Err(x);
                    self.prefix.pop();
                    self.req_in = outer_req_in;
                    break;
                }
            }
            self.prefix.pop();
            self.req_in = outer_req_in;
        }
        self.projs[depth + 1] = child;
        self.levels[depth] = lvl;
        result
    }

    /// Bounds for the children of P∪{e} (database `child`), then recurse or emit the leaves.
    fn expand(
        &mut self,
        depth: usize,
        keep: &[u32],
        e: u32,
        child: &mut Proj,
        leaf_children: bool,
    ) -> Result<(), MineError> {
        let p = self.p;
        // candidate items: keep items after e
        let from = match keep.binary_search(&e) {
            Ok(x) => x + 1,
            Err(x) => x,
        };
        let cands = &keep[from..];
        if cands.is_empty() {
            return Ok(());
        }
        for &i in cands {
            let i = i as usize;
            self.lu[i] = 0;
            self.su[i] = 0;
            self.sc[i] = 0;
            self.ut[i] = 0;
        }
        let n = child.ntx();
        if p.pruning {
            for t in 0..n {
                let (s, en) = (child.starts[t] as usize, child.starts[t + 1] as usize);
                let pref = child.prefix[t];
                let c = child.cnt[t];
                let mut rem: u64 = pref;
                for &u in &child.utils[s..en] {
                    rem += u;
                }
                let mut acc = pref;
                if leaf_children {
                    for j in (s..en).rev() {
                        let i = child.items[j] as usize;
                        let u = child.utils[j];
                        acc += u;
                        self.su[i] += acc;
                        self.lu[i] += rem;
                        self.sc[i] += c;
                        self.ut[i] += pref + u;
                    }
                } else {
                    for j in (s..en).rev() {
                        let i = child.items[j] as usize;
                        acc += child.utils[j];
                        self.su[i] += acc;
                        self.lu[i] += rem;
                        self.sc[i] += c;
                    }
                }
            }
        } else {
            for t in 0..n {
                let (s, en) = (child.starts[t] as usize, child.starts[t + 1] as usize);
                let tu = child.tu[t];
                let c = child.cnt[t];
                let pref = child.prefix[t];
                for j in s..en {
                    let i = child.items[j] as usize;
                    self.lu[i] += tu;
                    self.sc[i] += c;
                    if leaf_children {
                        self.ut[i] += pref + child.utils[j];
                    }
                }
            }
        }
        let d1 = depth + 1;
        let mut lvl = std::mem::take(&mut self.levels[d1]);
        lvl.keep.clear();
        lvl.explore.clear();
        for &i in cands {
            let iu = i as usize;
            if self.lu[iu] >= p.minutil && self.sc[iu] >= p.minsup {
                lvl.keep.push(i);
                if !p.pruning || self.su[iu] >= p.minutil {
                    lvl.explore.push(i);
                }
            }
        }
        let mut res = Ok(());
        let need_req = self.req != NONE && !self.req_in;
        if need_req && lvl.keep.binary_search(&self.req).is_err() {
            // no pattern below P∪{e} can hold the required item
            self.levels[d1] = lvl;
            return Ok(());
        }
        if leaf_children {
            // children of P∪{e} have the maximum length: their utilities are known already
            self.stats.candidates += lvl.keep.len() as u64;
            for idx in 0..lvl.keep.len() {
                let i = lvl.keep[idx];
                let u = self.ut[i as usize];
                if u >= p.minutil && (!need_req || i == self.req) {
                    res = self.emit(Some(i), u, self.sc[i as usize]);
                    if res.is_err() {
                        break;
                    }
                }
            }
        } else if !lvl.explore.is_empty() {
            // compact the projected database to the kept items
            if lvl.keep.len() < cands.len() {
                for &i in &lvl.keep {
                    self.mark[i as usize] = 1;
                }
                compact(child, &self.mark);
                for &i in &lvl.keep {
                    self.mark[i as usize] = 0;
                }
            }
            self.levels[d1] = lvl;
            let r = self.node(d1, child);
            return r;
        }
        self.levels[d1] = lvl;
        res
    }

    fn build_index(&mut self, db: &Proj, lvl: &mut Level) {
        // count occurrences of explore items
        for &i in &lvl.explore {
            self.slot[i as usize] = 0;
        }
        // use `ut` as a counter array temporarily? keep separate: count via slot (offset by 1)
        let mut counts: Vec<u32> = vec![0; lvl.explore.len()];
        for (j, &i) in lvl.explore.iter().enumerate() {
            self.slot[i as usize] = j as u32;
        }
        for &i in &db.items {
            let s = self.slot[i as usize];
            if s != NONE {
                counts[s as usize] += 1;
            }
        }
        lvl.ranges.clear();
        let mut acc = 0u32;
        for &c in &counts {
            lvl.ranges.push((acc, acc));
            acc += c;
        }
        lvl.entries.clear();
        lvl.entries.resize(acc as usize, (0, 0));
        for t in 0..db.ntx() {
            let (s, e) = (db.starts[t] as usize, db.starts[t + 1] as usize);
            for pos in s..e {
                let sl = self.slot[db.items[pos] as usize];
                if sl != NONE {
                    let r = &mut lvl.ranges[sl as usize];
                    lvl.entries[r.1 as usize] = (t as u32, pos as u32);
                    r.1 += 1;
                }
            }
        }
        for &i in &lvl.explore {
            self.slot[i as usize] = NONE;
        }
    }
}


/// Remove from `db` the items not marked; drop emptied transactions; merge with the previous
/// transaction when identical.
fn compact(db: &mut Proj, mark: &[u32]) {
    let n = db.ntx();
    let mut w = 0usize; // write position in items
    let mut wt = 0usize; // write transaction index
    let mut start_prev = 0usize;
    let mut s = db.starts[0] as usize;
    for t in 0..n {
        let e = db.starts[t + 1] as usize;
        let st = w;
        for j in s..e {
            let i = db.items[j];
            if mark[i as usize] != 0 {
                db.items[w] = i;
                db.utils[w] = db.utils[j];
                w += 1;
            }
        }
        s = e;
        if w == st {
            continue;
        }
        // merge with previous written transaction if identical
        if wt > 0 {
            let pl = st - start_prev;
            if pl == w - st && db.items[start_prev..st] == db.items[st..w] {
                for q in 0..pl {
                    let v = db.utils[st + q];
                    db.utils[start_prev + q] += v;
                }
                db.prefix[wt - 1] += db.prefix[t];
                db.cnt[wt - 1] += db.cnt[t];
                db.tu[wt - 1] += db.tu[t];
                w = st;
                continue;
            }
        }
        db.prefix[wt] = db.prefix[t];
        db.cnt[wt] = db.cnt[t];
        db.tu[wt] = db.tu[t];
        db.starts[wt + 1] = w as u32;
        start_prev = st;
        wt += 1;
    }
    db.items.truncate(w);
    db.utils.truncate(w);
    db.starts.truncate(wt + 1);
    db.prefix.truncate(wt);
    db.cnt.truncate(wt);
    db.tu.truncate(wt);
}
