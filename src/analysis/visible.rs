//! The paths an image shows after each layer, as the layers are read in order:
//! which layer put each one there and how many bytes it holds. Applying a layer's
//! entry says what it did (added, changed, removed) and what it hid, so the bytes
//! a later layer overwrites or deletes are charged to the layer that shipped them.

use std::collections::BTreeMap;

/// One visible path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// 0-based index of the layer that wrote it last.
    pub layer: usize,
    /// Content bytes (regular files; 0 for the rest).
    pub size: u64,
    pub dir: bool,
    /// What tells two versions of the path apart (see `analysis::fingerprint`),
    /// 0 where only sizes matter.
    pub print: u64,
}

/// Bytes one layer shipped that a later one hides: `path` (a file, or a
/// directory removed whole) came from `layer` and is hidden by `hidden_by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden {
    pub path: String,
    pub layer: usize,
    pub hidden_by: usize,
    pub bytes: u64,
}

/// What applying one entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// `A`, `C` or `D`, as `docker diff` writes them, or `O` for an opaque marker
    /// (its directory's lower contents are gone).
    pub op: char,
    /// What the entry hid, grouped by the layer that shipped it.
    pub hidden: Vec<Hidden>,
}

/// The merged view so far.
#[derive(Default)]
pub struct Visible {
    paths: BTreeMap<String, Shown>,
}

/// Whiteout names in a layer tar (the OCI spec's).
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// `./a/b/` -> `a/b`.
pub fn clean(name: &str) -> &str {
    name.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/')
}

fn parent_and_base(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

impl Visible {
    /// Applies one tar entry of layer `layer`: `name` as the tar holds it.
    pub fn apply(&mut self, layer: usize, name: &str, size: u64, dir: bool, print: u64) -> Applied {
        let path = clean(name);
        let (parent, base) = parent_and_base(path);
        if base == OPAQUE {
            // Hides what lower layers have below the directory, not this layer's own.
            let hidden = self.remove_below(parent, layer, |s| s.layer < layer);
            return Applied { op: 'O', hidden };
        }
        if let Some(target) = base.strip_prefix(WHITEOUT) {
            let target = if parent.is_empty() { target.to_string() } else { format!("{parent}/{target}") };
            let mut hidden = self.remove_below(&target, layer, |_| true);
            if let Some(old) = self.paths.remove(&target) {
                charge(&mut hidden, &target, old, layer);
            }
            return Applied { op: 'D', hidden };
        }
        let mut hidden = Vec::new();
        let op = match self.paths.get(path).copied() {
            None => 'A',
            Some(old) => {
                if !old.dir {
                    charge(&mut hidden, path, old, layer);
                } else if !dir {
                    hidden = self.remove_below(path, layer, |_| true);
                }
                'C'
            }
        };
        self.paths.insert(path.to_string(), Shown { layer, size, dir, print });
        Applied { op, hidden }
    }

    /// Removes what lies strictly below `dir` and `keep` selects; the bytes come
    /// back summed per layer that shipped them, named by `dir`.
    fn remove_below(&mut self, dir: &str, by: usize, select: impl Fn(&Shown) -> bool) -> Vec<Hidden> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let below: Vec<String> = self
            .paths
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(_, s)| select(s))
            .map(|(p, _)| p.clone())
            .collect();
        let mut hidden = Vec::new();
        for p in below {
            let old = self.paths.remove(&p).expect("listed just now");
            charge(&mut hidden, if dir.is_empty() { "/" } else { dir }, old, by);
        }
        hidden
    }

    /// The visible entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Shown> {
        self.paths.get(clean(path)).copied()
    }

    /// Every visible path (relative, no leading `/`) in byte order.
    pub fn paths(&self) -> impl Iterator<Item = (&String, &Shown)> {
        self.paths.iter()
    }
}

/// Adds `old`'s bytes to what `by` hides under `name`, one record per origin layer.
fn charge(hidden: &mut Vec<Hidden>, name: &str, old: Shown, by: usize) {
    if old.dir && old.size == 0 {
        return;
    }
    match hidden.iter_mut().find(|h| h.layer == old.layer && h.path == name) {
        Some(h) => h.bytes += old.size,
        None => hidden.push(Hidden { path: name.to_string(), layer: old.layer, hidden_by: by, bytes: old.size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_and_deletions_charge_the_layer_that_shipped_the_bytes() {
        let mut v = Visible::default();
        assert_eq!(v.apply(0, "./etc/", 0, true, 0).op, 'A');
        assert_eq!(v.apply(0, "etc/passwd", 100, false, 0).op, 'A');
        assert_eq!(v.apply(1, "big", 10 << 20, false, 0).op, 'A');
        let over = v.apply(2, "etc/passwd", 120, false, 0);
        assert_eq!(over.op, 'C');
        assert_eq!(over.hidden, [Hidden { path: "etc/passwd".into(), layer: 0, hidden_by: 2, bytes: 100 }]);
        let gone = v.apply(3, ".wh.big", 0, false, 0);
        assert_eq!((gone.op, gone.hidden[0].bytes, gone.hidden[0].layer), ('D', 10 << 20, 1));
        assert!(v.get("big").is_none());
    }

    #[test]
    fn a_deleted_or_opaque_directory_hides_its_contents_by_layer() {
        let mut v = Visible::default();
        v.apply(0, "d/", 0, true, 0);
        v.apply(0, "d/a", 5, false, 0);
        v.apply(1, "d/b", 7, false, 0);
        v.apply(1, "dx", 9, false, 0);
        let opaque = v.apply(2, "d/.wh..wh..opq", 0, false, 0);
        let mut by_layer: Vec<(usize, u64)> = opaque.hidden.iter().map(|h| (h.layer, h.bytes)).collect();
        by_layer.sort();
        assert_eq!(by_layer, [(0, 5), (1, 7)]);
        assert_eq!(opaque.hidden[0].path, "d");
        assert!(v.get("dx").is_some(), "a sibling with the same prefix stays");
        v.apply(3, "d/c", 3, false, 0);
        let gone = v.apply(4, ".wh.d", 0, false, 0);
        assert_eq!(gone.hidden, [Hidden { path: "d".into(), layer: 3, hidden_by: 4, bytes: 3 }]);
        // A file put where a directory was hides the directory's contents.
        v.apply(5, "e/f", 4, false, 0);
        v.apply(5, "e/", 0, true, 0);
        assert_eq!(v.apply(6, "e", 1, false, 0).hidden[0].bytes, 4);
    }
}
