//! The library crate as a module tree and the paths each file writes.
//!
//! Files are found the way rustc finds them: from `src/lib.rs` through every
//! `mod NAME;` (`NAME.rs` or `NAME/mod.rs` beside a mod.rs, under `stem/` beside
//! any other file, or where `#[path = "..."]` says). A path is then resolved to
//! the file that defines what it names, following `use` re-exports, so
//! `crate::oci::Digest` lands in `src/oci/digest.rs`, not in `src/oci/mod.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use crate::lexer::{tokenize, Kind, Token};

/// Resolution gives up after this many hops (a `use` chain, or a name that only an
/// extern crate defines and that would otherwise be looked up forever).
const MAX_HOPS: usize = 24;

pub struct File {
    /// Relative to the package root, as reported: `src/oci/store.rs`.
    pub rel: String,
    /// The module the file is: `["oci", "store"]`; `[]` for lib.rs.
    pub module: Vec<String>,
}

/// A module, whether it is a file or an inline `mod name { ... }` inside one.
#[derive(Default)]
struct Module {
    file: usize,
    children: BTreeSet<String>,
    /// Items the module defines: struct, enum, union, trait, type, fn, const,
    /// static, macro_rules.
    defined: BTreeSet<String>,
    /// `use` bindings (name -> path as written); the first one of a name wins.
    /// A `use` inside a function counts for the whole module: close enough for
    /// finding which file a name comes from.
    bindings: BTreeMap<String, Vec<String>>,
    /// Paths of `use path::*`.
    globs: Vec<Vec<String>>,
}

/// A path written in a file: a `use` leaf or a path in code.
pub struct Ref {
    pub file: usize,
    pub line: usize,
    /// The module the path is written in (an inline module included).
    scope: Vec<String>,
    segs: Vec<String>,
    /// `pub use` / `pub(crate) use`: the item is re-exported.
    public_use: bool,
}

impl Ref {
    /// True when the path spells out where it starts (`crate::`, `super::`,
    /// `self::`) rather than going through a name a `use` brought in.
    pub fn explicit(&self) -> bool {
        self.segs.first().is_some_and(|s| matches!(s.as_str(), "crate" | "super" | "self"))
    }
}

pub struct Crate {
    pub files: Vec<File>,
    modules: BTreeMap<Vec<String>, Module>,
    pub refs: Vec<Ref>,
}

/// A file-level dependency: `from` names, at `line`, something `to` defines.
#[derive(Clone, Debug)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub line: usize,
    /// The path resolved to an absolute one, `crate::oci::Digest`.
    pub path: String,
    /// A `pub use` of something inside the re-exporting module's own subtree.
    pub reexport: bool,
}

impl Crate {
    /// Reads the crate rooted at `src/lib.rs` under `root` (the package dir).
    pub fn load(root: &Path) -> Crate {
        let mut krate = Crate { files: Vec::new(), modules: BTreeMap::new(), refs: Vec::new() };
        let mut queue = VecDeque::from([(root.join("src/lib.rs"), Vec::new(), true)]);
        while let Some((path, module, mod_rs)) = queue.pop_front() {
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            let file = krate.files.len();
            krate.files.push(File { rel, module: module.clone() });
            let dir = child_dir(&path, mod_rs);
            let file_dir = path.parent().unwrap_or(root).to_path_buf();
            let tokens = tokenize(&text);
            let mut scanner = Scanner { krate: &mut krate, file, tokens, dir, file_dir, scopes: Vec::new(), children: Vec::new() };
            scanner.scan(module);
            queue.extend(scanner.into_children());
        }
        krate
    }

    /// Every path that resolves to a strata file, as an edge (self-edges included).
    pub fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::new();
        for r in &self.refs {
            let Some(abs) = self.absolutize(&r.scope, &r.segs, 0) else { continue };
            let Some(to) = self.locate(&abs, 0) else { continue };
            let own = &self.files[r.file].module;
            // A folder's mod.rs is its front door: it declares its children, re-exports
            // them and may call them. Such an edge into its own folder is how a folder
            // is built, not a dependency between peers, so it never closes a cycle.
            let front = self.files[r.file].rel.ends_with("/mod.rs");
            let reexport = (r.public_use || front) && abs.len() > own.len() && abs.starts_with(own);
            out.push(Edge { from: r.file, to, line: r.line, path: format!("crate::{}", abs.join("::")), reexport });
        }
        out
    }

    /// The absolute module path a ref's path starts from: its first segment is
    /// the top-level module it reaches (`None` for std and other crates).
    pub fn absolute(&self, r: &Ref) -> Option<Vec<String>> {
        self.absolutize(&r.scope, &r.segs, 0)
    }

    /// `segs` as written in `scope` -> a path from the crate root, or `None` when
    /// it leads outside the crate (std, a dependency, a local variable's type).
    fn absolutize(&self, scope: &[String], segs: &[String], hops: usize) -> Option<Vec<String>> {
        if hops > MAX_HOPS {
            return None;
        }
        let (base, rest) = match segs.first()?.as_str() {
            "crate" => (Vec::new(), &segs[1..]),
            "self" => (scope.to_vec(), &segs[1..]),
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                let keep = scope.len().checked_sub(ups)?;
                (scope[..keep].to_vec(), &segs[ups..])
            }
            name => (self.lookup(scope, name, hops + 1)?, &segs[1..]),
        };
        Some(base.into_iter().chain(rest.iter().cloned()).collect())
    }

    /// What a bare `name` means in `scope`, as an absolute path: a child module,
    /// an item of the scope, a `use` binding, or a name a glob import brings in.
    fn lookup(&self, scope: &[String], name: &str, hops: usize) -> Option<Vec<String>> {
        let m = self.modules.get(scope)?;
        if m.children.contains(name) || m.defined.contains(name) {
            return Some(join(scope, name));
        }
        if let Some(target) = m.bindings.get(name) {
            return self.absolutize(scope, target, hops + 1);
        }
        self.through_globs(scope, name, hops)
    }

    /// `name` as one of `scope`'s `use path::*` imports brings it in; a name the
    /// glob's module imported from another crate is not strata's.
    fn through_globs(&self, scope: &[String], name: &str, hops: usize) -> Option<Vec<String>> {
        let m = self.modules.get(scope)?;
        m.globs.iter().filter_map(|g| self.absolutize(scope, g, hops + 1)).find_map(|g| self.lookup(&g, name, hops + 1))
    }

    /// The file that defines what the absolute path `abs` names: the module's
    /// file for a module, else the file of the first item on the way, following
    /// `use` bindings (re-exports) to where the item really is. A name a module
    /// re-exports from another crate, or cannot place, is its own file's.
    fn locate(&self, abs: &[String], hops: usize) -> Option<usize> {
        if hops > MAX_HOPS {
            return None;
        }
        let mut at: Vec<String> = Vec::new();
        for (k, seg) in abs.iter().enumerate() {
            let m = self.modules.get(&at)?;
            let child = join(&at, seg);
            if m.children.contains(seg) && self.modules.contains_key(&child) {
                at = child;
                continue;
            }
            if m.defined.contains(seg) {
                return Some(m.file);
            }
            let via = match m.bindings.get(seg) {
                Some(target) => self.absolutize(&at, target, hops + 1),
                None => self.through_globs(&at, seg, hops),
            };
            let Some(mut target) = via else { return Some(m.file) };
            target.extend(abs[k + 1..].iter().cloned());
            return self.locate(&target, hops + 1).or(Some(m.file));
        }
        self.modules.get(&at).map(|m| m.file)
    }
}

fn join(base: &[String], name: &str) -> Vec<String> {
    base.iter().cloned().chain([name.to_string()]).collect()
}

/// Where `mod x;` in `file` looks for x: beside a mod-rs file (lib.rs, mod.rs, or
/// a file named by `#[path]`), else in the directory named after the file.
fn child_dir(file: &Path, mod_rs: bool) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("")).to_path_buf();
    if mod_rs {
        parent
    } else {
        parent.join(file.file_stem().unwrap_or_default())
    }
}

/// An inline `mod name { ... }` being scanned: its path and the brace depth inside it.
struct Scope {
    module: Vec<String>,
    depth: usize,
}

/// One pass over a file's tokens that records its modules, items, `use` leaves
/// and paths in code.
struct Scanner<'a> {
    krate: &'a mut Crate,
    file: usize,
    tokens: Vec<Token>,
    /// Where this file's `mod x;` children live.
    dir: PathBuf,
    /// The directory the file is in.
    file_dir: PathBuf,
    scopes: Vec<Scope>,
    /// `mod x;` declarations, read once this file is done.
    children: Vec<PendingChild>,
}

impl Scanner<'_> {
    fn scan(&mut self, module: Vec<String>) {
        self.krate.modules.insert(module.clone(), Module { file: self.file, ..Module::default() });
        self.scopes.push(Scope { module, depth: 0 });
        let mut depth = 0;
        let mut i = 0;
        while i < self.tokens.len() {
            let t = &self.tokens[i];
            if t.is_punct("{") {
                depth += 1;
            } else if t.is_punct("}") {
                if self.scopes.len() > 1 && self.scopes.last().is_some_and(|s| s.depth == depth) {
                    self.scopes.pop();
                }
                depth = depth.saturating_sub(1);
            } else if t.kind == Kind::Ident {
                i = self.word(i, depth);
                continue;
            }
            i += 1;
        }
    }

    fn scope(&self) -> &[String] {
        &self.scopes.last().expect("the file's own scope").module
    }

    fn module_mut(&mut self) -> &mut Module {
        let scope = self.scope().to_vec();
        self.krate.modules.get_mut(&scope).expect("scopes are registered")
    }

    /// Handles the identifier at `i`; returns the index to continue from.
    fn word(&mut self, i: usize, depth: usize) -> usize {
        let at_item_level = self.scopes.last().is_some_and(|s| s.depth == depth);
        let text = self.tokens[i].text.clone();
        let next = self.tokens.get(i + 1);
        let name = next.filter(|n| n.kind == Kind::Ident).map(|n| n.text.clone());
        let path_follows = next.is_some_and(|n| n.is_punct("::"));
        match text.as_str() {
            "use" => return self.use_declaration(i),
            "mod" if name.is_some() => return self.module_declaration(i, depth),
            "struct" | "enum" | "union" | "trait" | "type" | "fn" | "static" | "const" if at_item_level => {
                // `const fn f`, `static mut X`: the name comes one word later.
                let skip = name.as_deref().is_some_and(|n| matches!(n, "fn" | "mut" | "unsafe" | "async" | "extern"));
                if let Some(n) = if skip { None } else { name } {
                    self.module_mut().defined.insert(n);
                }
            }
            "macro_rules" if at_item_level => {
                if let Some(n) = self.tokens.get(i + 2).filter(|n| n.kind == Kind::Ident) {
                    let n = n.text.clone();
                    self.module_mut().defined.insert(n);
                }
            }
            _ => {}
        }
        if path_follows && !self.follows_path_or_macro_var(i) {
            return self.path_in_code(i);
        }
        i + 1
    }

    /// `::std::x` and `$crate::x` (a macro's own crate) are not paths from here,
    /// and the tail of `a::b` was taken with its head.
    fn follows_path_or_macro_var(&self, i: usize) -> bool {
        i.checked_sub(1).map(|p| &self.tokens[p]).is_some_and(|p| p.is_punct("::") || p.is_punct("$"))
    }

    /// `a::b::c` in code, up to the first segment that is not an identifier
    /// (`Vec::<u8>::new` stops at `Vec`).
    fn path_in_code(&mut self, start: usize) -> usize {
        let mut segs = vec![self.tokens[start].text.clone()];
        let mut i = start + 1;
        while self.tokens.get(i).is_some_and(|t| t.is_punct("::")) && self.tokens.get(i + 1).is_some_and(|t| t.kind == Kind::Ident) {
            segs.push(self.tokens[i + 1].text.clone());
            i += 2;
        }
        if segs[0] != "Self" {
            let (line, scope) = (self.tokens[start].line, self.scope().to_vec());
            self.krate.refs.push(Ref { file: self.file, line, scope, segs, public_use: false });
        }
        i
    }

    /// `mod name;` registers a child file; `mod name { ... }` opens an inline scope.
    fn module_declaration(&mut self, i: usize, depth: usize) -> usize {
        let name = self.tokens[i + 1].text.clone();
        let child = join(self.scope(), &name);
        self.module_mut().children.insert(name.clone());
        match self.tokens.get(i + 2) {
            Some(t) if t.is_punct("{") => {
                let file = self.file;
                self.krate.modules.insert(child.clone(), Module { file, ..Module::default() });
                self.scopes.push(Scope { module: child, depth: depth + 1 });
            }
            Some(t) if t.is_punct(";") => {
                let pending = PendingChild { module: child, attr_path: path_attribute(&self.tokens, i), inline: self.inline_dirs() };
                self.children.push(pending);
            }
            _ => {}
        }
        i + 2
    }

    /// The inline modules between the file and the current scope, as directories.
    fn inline_dirs(&self) -> Vec<String> {
        let own = self.scopes[0].module.len();
        self.scope()[own..].to_vec()
    }

    /// `use a::{b, c::d as e, f::*};` -> one ref per leaf, plus the bindings.
    fn use_declaration(&mut self, i: usize) -> usize {
        let public = visibility_before(&self.tokens, i);
        let line = self.tokens[i].line;
        let mut leaves = Vec::new();
        let mut at = i + 1;
        use_tree(&self.tokens, &mut at, Vec::new(), &mut leaves);
        let scope = self.scope().to_vec();
        for leaf in leaves {
            if leaf.path.is_empty() {
                continue;
            }
            let module = self.module_mut();
            match &leaf.binding {
                Binding::Glob => module.globs.push(leaf.path.clone()),
                Binding::Name(n) => {
                    module.bindings.entry(n.clone()).or_insert_with(|| leaf.path.clone());
                }
                Binding::Hidden => {}
            }
            self.krate.refs.push(Ref { file: self.file, line, scope: scope.clone(), segs: leaf.path, public_use: public });
        }
        // Continue after the `;` (or wherever the tree ended if it is malformed).
        self.tokens[at..].iter().position(|t| t.is_punct(";")).map_or(at, |p| at + p + 1)
    }

    fn into_children(self) -> Vec<(PathBuf, Vec<String>, bool)> {
        self.children
            .into_iter()
            .filter_map(|c| {
                let name = c.module.last()?.clone();
                let dir = c.inline.iter().fold(self.dir.clone(), |d, s| d.join(s));
                if let Some(p) = c.attr_path {
                    // Outside inline modules `#[path]` is relative to the declaring
                    // file's own directory, even in a non-mod-rs file.
                    let base = if c.inline.is_empty() { self.file_dir.clone() } else { dir };
                    return Some((base.join(p), c.module, true));
                }
                let flat = dir.join(format!("{name}.rs"));
                if flat.exists() {
                    Some((flat, c.module, false))
                } else {
                    Some((dir.join(name).join("mod.rs"), c.module, true))
                }
            })
            .collect()
    }
}

/// A `mod name;` waiting for its file to be read.
struct PendingChild {
    module: Vec<String>,
    attr_path: Option<String>,
    inline: Vec<String>,
}

/// True when the item starting at `i` is `pub` or `pub(...)`.
fn visibility_before(tokens: &[Token], i: usize) -> bool {
    match i.checked_sub(1).map(|p| &tokens[p]) {
        Some(t) if t.is_ident("pub") => true,
        Some(t) if t.is_punct(")") => {
            tokens[..i].iter().rposition(|t| t.is_punct("(")).is_some_and(|open| open > 0 && tokens[open - 1].is_ident("pub"))
        }
        _ => false,
    }
}

/// The `"..."` of a `#[path = "..."]` among the attributes before the `mod` at `i`.
fn path_attribute(tokens: &[Token], i: usize) -> Option<String> {
    let mut j = i;
    // Step back over a visibility: `pub`, `pub(crate)`.
    if j > 0 && tokens[j - 1].is_punct(")") {
        j = tokens[..j].iter().rposition(|t| t.is_punct("("))?;
    }
    if j > 0 && tokens[j - 1].is_ident("pub") {
        j -= 1;
    }
    // Then over each `#[...]`, looking for `path = "..."`.
    while j > 0 && tokens[j - 1].is_punct("]") {
        let open = tokens[..j - 1].iter().rposition(|t| t.is_punct("["))?;
        let attr = &tokens[open + 1..j - 1];
        if let [key, eq, value] = attr {
            if key.is_ident("path") && eq.is_punct("=") && value.kind == Kind::Str {
                return Some(value.text.clone());
            }
        }
        j = open.checked_sub(1)?; // the `#`
    }
    None
}

enum Binding {
    Name(String),
    Glob,
    /// `use Trait as _;`: in scope for its methods, but under no name.
    Hidden,
}

struct UseLeaf {
    path: Vec<String>,
    binding: Binding,
}

/// Parses one use tree starting at `*at` with `prefix` already taken.
fn use_tree(tokens: &[Token], at: &mut usize, prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
    let mut segs = prefix;
    while let Some(t) = tokens.get(*at) {
        *at += 1;
        if t.is_punct("::") {
            if segs.is_empty() {
                // `use ::dep::x`: a path from the extern prelude, never strata.
                segs.push(String::new());
            }
        } else if t.is_punct("*") {
            out.push(UseLeaf { path: segs, binding: Binding::Glob });
            return;
        } else if t.is_punct("{") {
            while tokens.get(*at).is_some_and(|t| !t.is_punct("}")) {
                use_tree(tokens, at, segs.clone(), out);
                if tokens.get(*at).is_some_and(|t| t.is_punct(",")) {
                    *at += 1;
                }
            }
            *at += 1;
            return;
        } else if t.kind == Kind::Ident {
            segs.push(t.text.clone());
            if tokens.get(*at).is_some_and(|n| n.is_punct("::")) {
                continue;
            }
            // `a::b::{self}` imports `a::b` itself.
            if segs.len() > 1 && segs.last().is_some_and(|s| s == "self") {
                segs.pop();
            }
            let mut binding = Binding::Name(segs.last().cloned().unwrap_or_default());
            if tokens.get(*at).is_some_and(|n| n.is_ident("as")) {
                binding = match tokens.get(*at + 1) {
                    Some(n) if n.text == "_" => Binding::Hidden,
                    Some(n) => Binding::Name(n.text.clone()),
                    None => Binding::Hidden,
                };
                *at += 2;
            }
            out.push(UseLeaf { path: segs, binding });
            return;
        } else {
            return;
        }
    }
}

#[cfg(test)]
#[path = "modules_tests.rs"]
mod tests;
