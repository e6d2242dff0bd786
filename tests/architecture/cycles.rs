//! Strongly connected components of a directed graph, and a shortest cycle through
//! a node, to report file-level import cycles.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Adjacency lists: `graph[n]` are the nodes `n` has an edge to.
pub type Graph = Vec<BTreeSet<usize>>;

/// Tarjan's algorithm; every component with more than one node, each sorted, in
/// order of their smallest node.
pub fn components(graph: &Graph) -> Vec<Vec<usize>> {
    let mut t = Tarjan {
        graph,
        index: vec![None; graph.len()],
        low: vec![0; graph.len()],
        stack: Vec::new(),
        on_stack: vec![false; graph.len()],
        next: 0,
        out: Vec::new(),
    };
    for n in 0..graph.len() {
        if t.index[n].is_none() {
            t.visit(n);
        }
    }
    let mut out: Vec<Vec<usize>> = t.out.into_iter().filter(|c| c.len() > 1).collect();
    for c in &mut out {
        c.sort();
    }
    out.sort();
    out
}

struct Tarjan<'a> {
    graph: &'a Graph,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: Vec<bool>,
    next: usize,
    out: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    /// Recursive: the graph is a crate's files, a few hundred nodes at most.
    fn visit(&mut self, n: usize) {
        self.index[n] = Some(self.next);
        self.low[n] = self.next;
        self.next += 1;
        self.stack.push(n);
        self.on_stack[n] = true;
        for &m in &self.graph[n] {
            match self.index[m] {
                None => {
                    self.visit(m);
                    self.low[n] = self.low[n].min(self.low[m]);
                }
                Some(i) if self.on_stack[m] => self.low[n] = self.low[n].min(i),
                Some(_) => {}
            }
        }
        if Some(self.low[n]) == self.index[n] {
            let mut component = Vec::new();
            while let Some(m) = self.stack.pop() {
                self.on_stack[m] = false;
                component.push(m);
                if m == n {
                    break;
                }
            }
            self.out.push(component);
        }
    }
}

/// A shortest cycle through `start` within `members` (breadth first), as the
/// nodes in order starting with `start`; `None` when there is none.
pub fn shortest_cycle(graph: &Graph, members: &[usize], start: usize) -> Option<Vec<usize>> {
    let inside: BTreeSet<usize> = members.iter().copied().collect();
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in graph[n].iter().filter(|m| inside.contains(m)) {
            if m == start {
                let mut path = vec![n];
                while let Some(&p) = parent.get(path.last()?) {
                    path.push(p);
                }
                path.reverse();
                return Some(path);
            }
            if m != start && !parent.contains_key(&m) {
                parent.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    None
}

/// Each member's shortest cycle, rotated to start at its smallest node so the
/// same cycle found from two members is reported once.
pub fn cycles_covering(graph: &Graph, members: &[usize]) -> Vec<Vec<usize>> {
    let mut out = BTreeSet::new();
    for &n in members {
        if let Some(mut cycle) = shortest_cycle(graph, members, n) {
            let smallest = cycle.iter().enumerate().min_by_key(|(_, &v)| v).map_or(0, |(i, _)| i);
            cycle.rotate_left(smallest);
            out.insert(cycle);
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        let mut g = vec![BTreeSet::new(); n];
        for &(a, b) in edges {
            g[a].insert(b);
        }
        g
    }

    #[test]
    fn finds_components_and_their_cycles() {
        // 0 <-> 1; 2 -> 3 -> 4 -> 2 with a chord 2 -> 4; 5 alone with a self-loop.
        let g = graph(6, &[(0, 1), (1, 0), (1, 2), (2, 3), (3, 4), (4, 2), (2, 4), (5, 5)]);
        assert_eq!(components(&g), vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(shortest_cycle(&g, &[2, 3, 4], 4), Some(vec![4, 2]));
        assert_eq!(cycles_covering(&g, &[2, 3, 4]), vec![vec![2, 3, 4], vec![2, 4]]);
        assert_eq!(cycles_covering(&g, &[0, 1]), vec![vec![0, 1]]);
    }
}
