//! Activation buffers reused by lifetime.
//!
//! Tensor `t` is the input for `t = 0`, else the output of layer `t - 1`. A tensor is live from
//! the layer that writes it to the last layer that reads it (its successor, a residual add, or
//! the output packing). Each tensor takes a free slot (one whose tensor is no longer live), and
//! a slot's buffer is as large as the largest tensor it ever holds. The TransformNet needs three
//! slots (a residual block keeps its input, its middle and its output alive together).

use crate::model::description::{NetworkDescription, Shape};

/// Which slot each tensor uses; see the module documentation for the rule.
pub(super) fn assign_slots(desc: &NetworkDescription, shapes: &[Shape]) -> Vec<usize> {
    let n = shapes.len();
    // last_use[t]: index of the last layer reading tensor t (n - 1 = the output packing).
    let mut last_use: Vec<usize> = (0..n).map(|t| t.min(n - 1)).collect();
    last_use[n - 1] = n - 1;
    for (i, l) in desc.layers.iter().enumerate() {
        if let Some(j) = l.residual.as_ref().and_then(|r| desc.layer_index(r)) {
            last_use[j + 1] = last_use[j + 1].max(i);
        }
    }
    // occupant[s]: the tensor currently in slot s.
    let mut occupant: Vec<usize> = Vec::new();
    (0..n)
        .map(|t| {
            // Tensor t is written by layer t - 1 (the input by the upload, "layer -1").
            let free = occupant.iter().position(|&o| t >= 1 && last_use[o] < t - 1);
            let s = match free {
                Some(s) => s,
                None => {
                    occupant.push(t);
                    occupant.len() - 1
                }
            };
            occupant[s] = t;
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::assign_slots;
    use crate::model::description::{NetworkDescription, Shape};

    #[test]
    fn no_two_live_tensors_share_a_slot_and_the_transformnets_need_three() {
        for name in ["transformnet-tf", "transformnet-torch"] {
            let desc = NetworkDescription::load(name).unwrap();
            let mut shapes = vec![Shape { c: 4, h: 64, w: 64 }];
            shapes.extend(desc.shapes(64, 64));
            let slot_of = assign_slots(&desc, &shapes);
            assert_eq!(slot_of.len(), shapes.len());
            // The last layer that reads tensor t (layer t reads its input t; residual adds read
            // their skip tensor; the output packing reads the last tensor, as "layer n - 1").
            let n = shapes.len();
            let mut last_read: Vec<usize> = (0..n).map(|t| t.min(n - 1)).collect();
            for (i, l) in desc.layers.iter().enumerate() {
                if let Some(j) = l.residual.as_ref().and_then(|r| desc.layer_index(r)) {
                    last_read[j + 1] = last_read[j + 1].max(i);
                }
            }
            // Tensor u is written by layer u - 1: no tensor still to be read may be in its slot.
            for t in 0..n {
                for u in t + 1..n {
                    if u - 1 <= last_read[t] {
                        assert_ne!(slot_of[t], slot_of[u], "{name}: tensors {t} and {u} are live together in one slot");
                    }
                }
            }
            assert_eq!(slot_of.iter().max(), Some(&2), "{name}: slots {slot_of:?}");
        }
    }
}
