//! Depthwise convolutions (one kernel per channel, channels first) as one tract operator: a 3x3 kernel's nine taps
//! are applied along whole output rows in one pass, code the compiler vectorises (with AVX when the processor has
//! it), read straight from the input for stride 1 and padding 1, from a copy of each plane with its zero border,
//! split into the stride's column phases, otherwise. tract's depthwise kernel walks patch zones value
//! by value. `examples/profile_models -- 100` pinned, interleaved with tract's own (2026-11-30): BlazeFace 2.85 ->
//! 2.70 ms, FaceMesh v2 10.59 -> 10.12 ms, MiniFASNet V2 2.77 -> 2.34 ms. [`super::conv`] picks the nodes.

use super::conv::{deal_out, ConvAttributes, ConvOperands};
use super::onnx::eval_planes;
use super::wide::has_avx;
use tract_onnx::tract_hir::internal::*;

/// A depthwise 2-D convolution of an (N, C, H, W) float tensor with constant weights (C, 1, kh, kw), an optional
/// constant bias (C), strides and explicit zero padding, undilated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthwiseConv {
    weights: Arc<Tensor>,
    bias: Option<Arc<Tensor>>,
    kernel: [usize; 2],
    strides: [usize; 2],
    /// Top, left, bottom, right.
    pads: [usize; 4],
}

impl DepthwiseConv {
    /// Our operator for a convolution with as many groups as input channels, weights (C, 1, kh, kw).
    pub(super) fn for_conv(attributes: &ConvAttributes, operands: &ConvOperands) -> Option<Self> {
        let &ConvAttributes { groups, kernel, strides, pads } = attributes;
        let depthwise = groups > 1
            && operands.input_channels == groups
            && operands.weights.shape() == [groups, 1, kernel[0], kernel[1]];
        depthwise.then(|| DepthwiseConv {
            weights: operands.weights.clone(),
            bias: operands.bias.clone(),
            kernel,
            strides,
            pads,
        })
    }

    /// The output's height and width for an input of `height` x `width`.
    fn output_side(&self, height: usize, width: usize) -> Option<[usize; 2]> {
        let side = |input: usize, before: usize, after: usize, kernel: usize, stride: usize| {
            (input + before + after).checked_sub(kernel).map(|span| span / stride + 1)
        };
        let [top, left, bottom, right] = self.pads;
        Some([
            side(height, top, bottom, self.kernel[0], self.strides[0])?,
            side(width, left, right, self.kernel[1], self.strides[1])?,
        ])
    }

    /// Convolves `input` (planes of `height` x `width`) into `output` (planes of `out_height` x `out_width`, as
    /// [`DepthwiseConv::output_side`] gives, neither side 0).
    fn apply(
        &self,
        input: &[f32],
        [height, width]: [usize; 2],
        [out_height, out_width]: [usize; 2],
        output: &mut [f32],
    ) -> TractResult<()> {
        let [kernel_height, kernel_width] = self.kernel;
        let [stride_y, stride_x] = self.strides;
        let [top, left, bottom, right] = self.pads;
        let weights = self.weights.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = match &self.bias {
            Some(bias) => Some(bias.try_as_plain_ram()?.as_slice::<f32>()?),
            None => None,
        };
        let kernel_size = kernel_height * kernel_width;
        let channels = weights.len() / kernel_size;
        let wide = has_avx();
        // Each plane is copied once with its zero border and split into `stride_x` column phases (phase p holds
        // columns p, p + stride, ...): every tap then reads a contiguous run of `out_width` values.
        let padded_height = height + top + bottom;
        let phase_width = (width + left + right).div_ceil(stride_x);
        let phase_len = padded_height * phase_width;
        let mut phases = vec![0.0f32; stride_x * phase_len];
        // With a stride, each row goes through one padded row first, then is dealt out to the phases.
        let mut padded_row = vec![0.0f32; stride_x * phase_width];
        // Per tap (dy, dx): where the values it meets along output row 0 start.
        let tap_starts: Vec<usize> = (0..kernel_size)
            .map(|tap| {
                let (dy, dx) = (tap / kernel_width, tap % kernel_width);
                (dx % stride_x * padded_height + dy) * phase_width + dx / stride_x
            })
            .collect();
        let planes = input.chunks_exact(height * width).zip(output.chunks_exact_mut(out_height * out_width));
        if self.kernel == [3, 3] && self.strides == [1, 1] && self.pads == [1; 4] {
            // The models' commonest shape is read where it lies: a padded copy of each plane costs as much again.
            let zeros = vec![0.0f32; width];
            for (plane_index, (plane, out_plane)) in planes.enumerate() {
                let channel = plane_index % channels;
                let taps = <[f32; 9]>::try_from(&weights[channel * 9..][..9])?;
                let start = bias.map_or(0.0, |bias| bias[channel]);
                plane_3x3_same(plane, out_plane, width, Taps { taps, start }, &zeros, wide);
            }
            return Ok(());
        }
        for (plane_index, (plane, out_plane)) in planes.enumerate() {
            for (y, row) in plane.chunks_exact(width).enumerate() {
                let row_start = (y + top) * phase_width;
                if stride_x == 1 {
                    phases[row_start + left..][..width].copy_from_slice(row);
                    continue;
                }
                padded_row[left..][..width].copy_from_slice(row);
                deal_out(&padded_row, stride_x, &mut phases[row_start..], phase_len, phase_width);
            }
            let channel = plane_index % channels;
            let taps = &weights[channel * kernel_size..][..kernel_size];
            let start = bias.map_or(0.0, |bias| bias[channel]);
            let row_step = stride_y * phase_width;
            if let (Ok(taps), Ok(starts)) = (<[f32; 9]>::try_from(taps), <[usize; 9]>::try_from(&tap_starts[..])) {
                let kernel = Taps { taps, start };
                plane_3x3(out_plane, out_width, Taps3x3 { phases: &phases, starts, row_step, kernel }, wide);
                continue;
            }
            for (y, out_row) in out_plane.chunks_exact_mut(out_width).enumerate() {
                out_row.fill(start);
                for (&tap, &tap_start) in taps.iter().zip(&tap_starts) {
                    let values = &phases[y * row_step + tap_start..][..out_width];
                    out_row.iter_mut().zip(values).for_each(|(out, &value)| *out += tap * value);
                }
            }
        }
        Ok(())
    }
}

/// One channel's 3x3 kernel (row by row) and its bias.
#[derive(Clone, Copy)]
struct Taps {
    taps: [f32; 9],
    start: f32,
}

/// One plane's 3x3 kernel and where its taps read: tap `t` meets, along output row `y`, the `width` values of
/// `phases` from `y * row_step + starts[t]`.
struct Taps3x3<'a> {
    phases: &'a [f32],
    starts: [usize; 9],
    row_step: usize,
    kernel: Taps,
}

/// One output plane (rows of `width`) of a 3x3 depthwise convolution over phases (see [`Taps3x3`]).
/// With `wide` (the processor has AVX, [`has_avx`]) the same code runs compiled for AVX.
fn plane_3x3(out: &mut [f32], width: usize, kernel: Taps3x3<'_>, wide: bool) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true when the processor has AVX.
        return unsafe { plane_3x3_avx(out, width, kernel) };
    }
    let _ = wide;
    plane_3x3_portable(out, width, kernel)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn plane_3x3_avx(out: &mut [f32], width: usize, kernel: Taps3x3<'_>) {
    plane_3x3_portable(out, width, kernel)
}

#[inline(always)]
fn plane_3x3_portable(out: &mut [f32], width: usize, kernel: Taps3x3<'_>) {
    for (y, out_row) in out.chunks_exact_mut(width).enumerate() {
        let offset = y * kernel.row_step;
        row_3x3(out_row, kernel.starts.map(|tap| &kernel.phases[offset + tap..][..width]), kernel.kernel);
    }
}

/// One output plane of a 3x3 convolution with stride 1 and padding 1 on every side, read straight from its input
/// plane (rows of `width`); `zeros` is a row of zeros, the padding above and below.
fn plane_3x3_same(input: &[f32], out: &mut [f32], width: usize, kernel: Taps, zeros: &[f32], wide: bool) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true when the processor has AVX.
        return unsafe { plane_3x3_same_avx(input, out, width, kernel, zeros) };
    }
    let _ = wide;
    plane_3x3_same_portable(input, out, width, kernel, zeros)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn plane_3x3_same_avx(input: &[f32], out: &mut [f32], width: usize, kernel: Taps, zeros: &[f32]) {
    plane_3x3_same_portable(input, out, width, kernel, zeros)
}

#[inline(always)]
fn plane_3x3_same_portable(input: &[f32], out: &mut [f32], width: usize, kernel: Taps, zeros: &[f32]) {
    let row = |y: usize| input.get(y * width..(y + 1) * width).unwrap_or(zeros);
    for (y, out_row) in out.chunks_exact_mut(width).enumerate() {
        let rows = [y.checked_sub(1).map_or(zeros, row), row(y), row(y + 1)];
        // Inside: output x reads columns x - 1, x, x + 1 of each row.
        let inner = width.saturating_sub(2);
        if inner > 0 {
            let slices = std::array::from_fn(|tap| &rows[tap / 3][tap % 3..][..inner]);
            row_3x3(&mut out_row[1..][..inner], slices, kernel);
        }
        // The first and last columns meet the padding.
        for x in [0, width - 1] {
            let mut sum = kernel.start;
            for (tap, &weight) in kernel.taps.iter().enumerate() {
                if let Some(column) = (x + tap % 3).checked_sub(1).filter(|&column| column < width) {
                    sum += weight * rows[tap / 3][column];
                }
            }
            out_row[x] = sum;
        }
    }
}

/// One output row: `out = start + sum of taps[t] * values[t]`, the nine value runs as long as `out`.
#[inline(always)]
fn row_3x3(out: &mut [f32], values: [&[f32]; 9], kernel: Taps) {
    let [k0, k1, k2, k3, k4, k5, k6, k7, k8] = kernel.taps;
    let start = kernel.start;
    let width = out.len();
    let [a0, a1, a2, b0, b1, b2, c0, c1, c2] = values.map(|run| &run[..width]);
    for x in 0..width {
        // Summed as a tree, not a chain: nine dependent additions per value bound the loop by their latency
        // (measured 1.5x slower).
        let top = (k0 * a0[x] + k1 * a1[x]) + (k2 * a2[x] + start);
        let middle = (k3 * b0[x] + k4 * b1[x]) + k5 * b2[x];
        let bottom = (k6 * c0[x] + k7 * c1[x]) + k8 * c2[x];
        out[x] = top + (middle + bottom);
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "DepthwiseConv".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        eval_planes(
            inputs,
            |height, width| self.output_side(height, width),
            |input, side, out_side, output| self.apply(input, side, out_side, output),
        )
    }
}

impl TypedOp for DepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0].shape.as_concrete().context("depthwise convolution of a symbolic shape")?;
        let &[batch, channels, height, width] = shape else {
            bail!("depthwise convolution of a tensor of shape {shape:?}, expected rank 4");
        };
        let [out_height, out_width] = self.output_side(height, width).context("kernel larger than the input")?;
        Ok(tvec!(f32::fact([batch, channels, out_height, out_width])))
    }

    as_op!();
}
