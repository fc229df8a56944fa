// conv2d: 2-D convolution (cross-correlation) over an HWC f32 activation, register blocked.
//
// Bindings (group 0):
//   0 params  uniform  ConvParams (sizes, padding, band window, element shifts)
//   1 input   storage  read        HWC f32, rows [in_row0, ...) of the input tensor
//   2 weights storage  read        vec4 blocks: [oc_block][ky][kx][ic][OCB4] (see model::gpu::weights)
//   3 bias    storage  read        [out_c padded to a multiple of 4 * OCB4]
//   4 output  storage  read_write  HWC f32, rows [out_row0, out_row0 + band_rows)
// Overrides:
//   K        kernel size (square)          STRIDE   stride
//   UPSAMPLE nearest-neighbour upsampling factor applied to the input first (1 = none)
//   REFLECT  reflection padding (true) or zero padding (false)
//   OCB4     output channels per invocation, in groups of 4 (1, 2 or 4); each invocation
//            computes OCB4*4 channels for 32/OCB4 consecutive output pixels of one row.
// Dispatch: workgroups (ceil(ceil(out_w / PXN) / 8), ceil(band_rows / 8), out_c_blocks).

struct ConvParams {
    in_w: u32, in_h: u32, in_c: u32, in_row0: u32,
    out_w: u32, out_h: u32, out_c: u32, out_row0: u32,
    band_rows: u32, in_shift: u32, out_shift: u32, oc_blocks: u32,
    pad_top: i32, pad_left: i32, _pad0: u32, _pad1: u32,
}

override K: u32 = 3u;
override STRIDE: u32 = 1u;
override UPSAMPLE: u32 = 1u;
override REFLECT: bool = false;
override OCB4: u32 = 4u;

const ACC: u32 = 32u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Maps a coordinate of the (virtual, upsampled) padded input to a real input coordinate.
// Returns -1 when the tap falls on zero padding.
fn source(v: i32, real: u32) -> i32 {
    let n = i32(real * UPSAMPLE);
    var s = v;
    if (REFLECT) {
        if (s < 0) { s = -s; }
        if (s >= n) { s = 2 * (n - 1) - s; }
        s = clamp(s, 0, n - 1);
    } else if (s < 0 || s >= n) {
        return -1;
    }
    return s / i32(UPSAMPLE);
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pxn = ACC / OCB4;
    let ox0 = gid.x * pxn;
    let band_row = gid.y;
    let ocb = gid.z;
    if (ox0 >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;

    var acc: array<vec4<f32>, ACC>;
    for (var i = 0u; i < ACC; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    // Input x offset (in elements, without the channel) and validity for each pixel and kx.
    var xoff: array<i32, ACC>;

    let wstride_tap = p.in_c * OCB4;
    let wbase_block = ocb * K * K * wstride_tap;
    for (var ky = 0u; ky < K; ky++) {
        let iy = source(i32(oy * STRIDE + ky) - p.pad_top, p.in_h);
        if (iy < 0) {
            continue;
        }
        let row_base = i32(p.in_shift) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c);
        for (var kx = 0u; kx < K; kx++) {
            for (var px = 0u; px < pxn; px++) {
                let ix = source(i32((ox0 + px) * STRIDE + kx) - p.pad_left, p.in_w);
                xoff[px] = select(-1, row_base + ix * i32(p.in_c), ix >= 0 && ox0 + px < p.out_w);
            }
            var widx = wbase_block + (ky * K + kx) * wstride_tap;
            for (var ic = 0u; ic < p.in_c; ic++) {
                var w: array<vec4<f32>, 4>;
                for (var j = 0u; j < OCB4; j++) {
                    w[j] = weights[widx + j];
                }
                widx += OCB4;
                for (var px = 0u; px < pxn; px++) {
                    let o = xoff[px];
                    let v = select(0.0, input[max(o, 0) + i32(ic)], o >= 0);
                    for (var j = 0u; j < OCB4; j++) {
                        acc[px * OCB4 + j] += v * w[j];
                    }
                }
            }
        }
    }

    let out_row = p.out_shift + band_row * p.out_w * p.out_c;
    for (var j = 0u; j < OCB4; j++) {
        let oc0 = (ocb * OCB4 + j) * 4u;
        let b = bias[ocb * OCB4 + j];
        for (var px = 0u; px < pxn; px++) {
            let ox = ox0 + px;
            if (ox >= p.out_w) {
                break;
            }
            let v = acc[px * OCB4 + j] + b;
            let base = out_row + ox * p.out_c + oc0;
            for (var c = 0u; c < 4u; c++) {
                if (oc0 + c < p.out_c) {
                    output[base + c] = v[c];
                }
            }
        }
    }
}
