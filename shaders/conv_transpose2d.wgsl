// conv_transpose2d: TensorFlow conv2d_transpose with stride 2, 'SAME' output size (2H x 2W),
// over an HWC f32 activation, register blocked, written as a gather:
//   y[r, s, o] = sum over (dy, dx, c) with r = 2i + dy, s = 2j + dx of x[i, j, c] * w[c, o, dy, dx]
// Every output pixel of one invocation has the same column parity, so the taps that reach it
// are known per invocation and the others are skipped.
//
// Bindings (group 0): same as conv2d.wgsl
//   0 params  uniform  ConvParams     1 input   storage read   HWC f32 (band window)
//   2 weights storage  read [oc_block][ky][kx][ic][OCB4] vec4    3 bias storage read
//   4 output  storage  read_write HWC f32 (band window)
// Overrides: K (kernel size), OCB4 (output channels per invocation / 4).
// Dispatch: workgroups (ceil(ceil(ceil(out_w / 2) / PXN) / 8), ceil(band_rows / 8), 2 * oc_blocks);
//   z = 2 * oc_block + column parity.

struct ConvParams {
    in_w: u32, in_h: u32, in_c: u32, in_row0: u32,
    out_w: u32, out_h: u32, out_c: u32, out_row0: u32,
    band_rows: u32, in_shift: u32, out_shift: u32, oc_blocks: u32,
    pad_top: i32, pad_left: i32, _pad0: u32, _pad1: u32,
}

override K: u32 = 3u;
override OCB4: u32 = 4u;

const ACC: u32 = 32u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pxn = ACC / OCB4;
    let band_row = gid.y;
    let ocb = gid.z / 2u;
    let phx = gid.z % 2u;
    // Output columns of this invocation: 2 * (j0 + px) + phx.
    let j0 = gid.x * pxn;
    if (2u * j0 + phx >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;

    var acc: array<vec4<f32>, ACC>;
    for (var i = 0u; i < ACC; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var xoff: array<i32, ACC>;

    let wstride_tap = p.in_c * OCB4;
    let wbase_block = ocb * K * K * wstride_tap;
    for (var ky = 0u; ky < K; ky++) {
        let dyr = i32(oy) - i32(ky);
        if (dyr < 0 || (dyr % 2) != 0) {
            continue;
        }
        let iy = dyr / 2;
        if (iy >= i32(p.in_h)) {
            continue;
        }
        let row_base = i32(p.in_shift) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c);
        for (var kx = 0u; kx < K; kx++) {
            // Column s = 2 * (j0 + px) + phx receives input column (s - kx) / 2 when s - kx is even.
            if (((phx + kx) % 2u) != 0u) {
                continue;
            }
            for (var px = 0u; px < pxn; px++) {
                let s = i32(2u * (j0 + px) + phx);
                let ix = (s - i32(kx)) / 2;
                let ok = s - i32(kx) >= 0 && ix < i32(p.in_w) && u32(s) < p.out_w;
                xoff[px] = select(-1, row_base + ix * i32(p.in_c), ok);
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
            let ox = 2u * (j0 + px) + phx;
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
