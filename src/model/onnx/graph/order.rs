//! The order the importer visits the nodes in.

use std::collections::{HashMap, VecDeque};

use super::{node_name, Val};
use crate::model::onnx::proto;
use crate::model::onnx::OnnxError;

/// Kahn's algorithm over the nodes; names an input nobody provides, a value produced twice,
/// or a node on a cycle.
pub(super) fn topological_order(graph: &proto::Graph<'_>, known: &HashMap<&str, Val>) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            if known.contains_key(o.as_str()) || producer.insert(o.as_str(), i).is_some() {
                return Err(OnnxError::Graph(format!(
                    "value `{o}` is produced more than once (node `{}`)",
                    node_name(n)
                )));
            }
        }
    }
    let mut indegree = vec![0usize; graph.nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    indegree[i] += 1;
                    users[p].push(i);
                }
                None if known.contains_key(inp.as_str()) => {}
                None => {
                    return Err(OnnxError::Graph(format!(
                        "node `{}` reads `{inp}`, which is neither an initializer, the input, nor produced by a node",
                        node_name(n)
                    )))
                }
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..graph.nodes.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() < graph.nodes.len() {
        let stuck =
            (0..graph.nodes.len()).find(|&i| indegree[i] > 0).map_or(String::new(), |i| node_name(&graph.nodes[i]));
        return Err(OnnxError::Graph(format!("the graph has a cycle (through node `{stuck}`)")));
    }
    Ok(order)
}
