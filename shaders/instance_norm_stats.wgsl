// instance_norm_stats: per-channel partial statistics of an HWC activation, as Welford
// triples (count, mean, M2) merged with Chan's formula in a workgroup tree reduction.
// Each invocation handles 4 consecutive channels at once; with VEC4 (channels a multiple of 4,
// so band windows start on a vec4 boundary) it reads them as one vec4 load, which lavapipe
// executes at the cost of one scalar load. Each workgroup reduces one group of 4 channels
// over one chunk of pixels of one row band; the partials of all chunks and bands are merged
// by instance_norm_finalize.wgsl.
//
// Bindings (group 0):
//   0 params   uniform    StatsParams
//   1 x        storage    read        HWC st, the band window (starts on a row boundary)
//   2 partials storage    read_write  vec4 (count, mean, M2, 0) at [(chunk_base + chunk) * channels + c]
//   3 x4       storage    read        the same window as st4s (with VEC4; else any 16-byte buffer)
// (`st`: the stored type of the precision prelude joined before this file; statistics are f32.)
// Overrides: VEC4 (channels % 4 == 0: read through x4).
// Dispatch: workgroups (chunks in this band, ceil(channels / 4), 1), 64 invocations each.

struct StatsParams {
    channels: u32, pixels: u32, chunk_pixels: u32, chunk_base: u32,
    shift: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: StatsParams;
@group(0) @binding(1) var<storage, read> x: array<st>;
@group(0) @binding(2) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> x4: array<st4>;

override VEC4: bool = true;

// Channels [4g, 4g + 4) of pixel i; channels past the last read the last one (not counted).
fn load(i: u32, g: u32) -> vec4<f32> {
    if (VEC4) {
        return from_st4(x4[p.shift / 4u + i * (p.channels / 4u) + g]);
    }
    let base = p.shift + i * p.channels;
    let last = p.channels - 1u;
    return vec4<f32>(from_st(x[base + min(4u * g, last)]), from_st(x[base + min(4u * g + 1u, last)]),
                     from_st(x[base + min(4u * g + 2u, last)]), from_st(x[base + min(4u * g + 3u, last)]));
}

// The count is the same for the 4 channels of a group: one scalar, two vec4s.
var<workgroup> tree_n: array<f32, WG>;
var<workgroup> tree_mean: array<vec4<f32>, WG>;
var<workgroup> tree_m2: array<vec4<f32>, WG>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let chunk = wid.x;
    let g = wid.y;
    let start = chunk * p.chunk_pixels;
    let end = min(start + p.chunk_pixels, p.pixels);

    // Welford over this invocation's pixels, 4 channels at once.
    var n = 0.0;
    var mean = vec4<f32>(0.0);
    var m2 = vec4<f32>(0.0);
    for (var i = start + lid; i < end; i += WG) {
        let v = load(i, g);
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    tree_n[lid] = n;
    tree_mean[lid] = mean;
    tree_m2[lid] = m2;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            let na = tree_n[lid];
            let nb = tree_n[lid + half];
            let total = na + nb;
            if (total > 0.0) {
                let d = tree_mean[lid + half] - tree_mean[lid];
                tree_mean[lid] += d * (nb / total);
                tree_m2[lid] += tree_m2[lid + half] + d * d * (na * nb / total);
                tree_n[lid] = total;
            }
        }
        workgroupBarrier();
    }
    let c = 4u * g + lid;
    if (lid < 4u && c < p.channels) {
        partials[(p.chunk_base + chunk) * p.channels + c] = vec4<f32>(tree_n[0], tree_mean[0][lid], tree_m2[0][lid], 0.0);
    }
}
