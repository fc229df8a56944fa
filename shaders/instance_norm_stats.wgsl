// instance_norm_stats: per-channel partial statistics of an HWC f32 activation, as Welford
// triples (count, mean, M2) merged with Chan's formula in a workgroup tree reduction.
// Each workgroup reduces one channel over one chunk of pixels of one row band; the partials
// of all chunks and bands are merged by instance_norm_finalize.wgsl.
//
// Bindings (group 0):
//   0 params   uniform    StatsParams
//   1 x        storage    read        HWC f32, the band window (starts on a row boundary)
//   2 partials storage    read_write  vec4 (count, mean, M2, 0) at [(chunk_base + chunk) * channels + c]
// Dispatch: workgroups (chunks in this band, channels, 1), 64 invocations each.

struct StatsParams {
    channels: u32, pixels: u32, chunk_pixels: u32, chunk_base: u32,
    shift: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: StatsParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<vec4<f32>>;

var<workgroup> tree: array<vec3<f32>, WG>;

fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if (n == 0.0) {
        return vec3<f32>(0.0);
    }
    let d = b.y - a.y;
    let mean = a.y + d * (b.x / n);
    let m2 = a.z + b.z + d * d * (a.x * b.x / n);
    return vec3<f32>(n, mean, m2);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let chunk = wid.x;
    let c = wid.y;
    let start = chunk * p.chunk_pixels;
    let end = min(start + p.chunk_pixels, p.pixels);

    // Welford over this invocation's pixels.
    var s = vec3<f32>(0.0);
    for (var i = start + lid; i < end; i += WG) {
        let v = x[p.shift + i * p.channels + c];
        s.x += 1.0;
        let d = v - s.y;
        s.y += d / s.x;
        s.z += d * (v - s.y);
    }
    tree[lid] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            tree[lid] = merge(tree[lid], tree[lid + half]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let t = tree[0];
        partials[(p.chunk_base + chunk) * p.channels + c] = vec4<f32>(t, 0.0);
    }
}
