//! Depthwise convolutions (one kernel per channel, channels first) as one tract operator: each plane is copied
//! once with its zero border, split into its strides' phases ([`super::conv::Phases`]), and each tap applied along
//! one run over every output row at once, code the compiler vectorises (with AVX when the processor has it).
//! tract's depthwise kernel walks patch zones value by value. `examples/profile_models -- 100` pinned, interleaved
//! with tract's own (2026-11-30): BlazeFace 2.85 -> 2.70 ms, FaceMesh v2 10.59 -> 10.12 ms, MiniFASNet V2 2.77 ->
//! 2.34 ms; one run a plane rather than one a row, interleaved with that: the models' depthwise nodes 0.92 -> 0.56,
//! 1.11 -> 0.72 and 0.63 -> 0.37 ms. [`super::conv`] picks the nodes.

use super::conv::{output_side, ConvAttributes, ConvOperands, Phases};
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
    pub(super) fn output_side(&self, height: usize, width: usize) -> Option<[usize; 2]> {
        output_side([height, width], self.kernel, self.strides, self.pads)
    }

    /// Convolves `input` (planes of `height` x `width`) into `output` (planes of `out_height` x `out_width`, as
    /// [`DepthwiseConv::output_side`] gives, neither side 0, each `out_stride` values after the one before).
    pub(super) fn apply(
        &self,
        input: &[f32],
        [height, width]: [usize; 2],
        [out_height, out_width]: [usize; 2],
        output: &mut [f32],
        out_stride: usize,
    ) -> TractResult<()> {
        let plane_count = input.len() / (height * width).max(1);
        ensure!(
            out_stride >= out_height * out_width
                && output.len() >= (plane_count * out_stride).saturating_sub(out_stride - out_height * out_width),
            "{} output values for {plane_count} planes of {out_height} x {out_width}, {out_stride} apart",
            output.len()
        );
        let [kernel_height, kernel_width] = self.kernel;
        let weights = self.weights.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = match &self.bias {
            Some(bias) => Some(bias.try_as_plain_ram()?.as_slice::<f32>()?),
            None => None,
        };
        let kernel_size = kernel_height * kernel_width;
        let channels = weights.len() / kernel_size;
        let wide = has_avx();
        let kernel_of = |channel: usize| {
            let taps = &weights[channel * kernel_size..][..kernel_size];
            (taps, bias.map_or(0.0, |bias| bias[channel]))
        };
        let out_planes = output.chunks_mut(out_stride).map(|plane| &mut plane[..out_height * out_width]);
        let planes = input.chunks_exact(height * width).zip(out_planes);
        if self.pads == [0; 4] && self.kernel == [height, width] {
            // A kernel as large as the unpadded plane (MiniFASNet's last depthwise convolution, 512 planes of 5x5):
            // one sum a plane, not a split and a run of one value a tap.
            for (plane_index, (plane, out)) in planes.enumerate() {
                let (taps, start) = kernel_of(plane_index % channels);
                out[0] = taps.iter().zip(plane).fold(start, |sum, (&weight, &value)| sum + weight * value);
            }
            return Ok(());
        }
        // Each plane is copied with its zero border, split into its strides' phases, and every tap applied along
        // one run over all output rows at once (each row as wide as a phase, the values past the output's width
        // thrown away): a call a row costs more than the arithmetic on small planes, and reading a plane in place
        // (tried for 3x3, stride 1, padding 1) was slower on large ones too. A 3x3 kernel over rows of eight values
        // or more, with AVX, runs row by row in one loop of ours instead ([`rows_3x3`]), straight into the output.
        let layout = Phases::new([height, width], self.strides, self.pads);
        let row_step = layout.row_step();
        let run = out_height * row_step;
        let tap_starts: Vec<usize> =
            (0..kernel_size).map(|t| layout.tap_start(t / kernel_width, t % kernel_width)).collect();
        let by_rows = match <[usize; 9]>::try_from(tap_starts.as_slice()) {
            Ok(starts) if wide && out_width >= 8 && row_step != out_width => Some(starts),
            _ => None,
        };
        // The last rows' thrown-away values read up to a kernel's width past the phases.
        let mut phases = vec![0.0f32; layout.len() + kernel_width];
        let mut padded_row = layout.padded_row();
        let mut rows = vec![0.0f32; if row_step == out_width || by_rows.is_some() { 0 } else { run }];
        for (plane_index, (plane, out_plane)) in planes.enumerate() {
            layout.split(plane, &mut padded_row, &mut phases);
            let (taps, start) = kernel_of(plane_index % channels);
            if let (Some(starts), Ok(taps)) = (by_rows, <[f32; 9]>::try_from(taps)) {
                let runs = Runs { values: &phases, starts, rows: out_height, width: out_width, step: row_step };
                rows_3x3(out_plane, &runs, Taps { taps, start }, wide);
                continue;
            }
            let out = if row_step == out_width { &mut out_plane[..] } else { &mut rows[..] };
            let values = |tap: usize| &phases[tap_starts[tap]..][..run];
            if let Ok(taps) = <[f32; 9]>::try_from(taps) {
                run_3x3(out, std::array::from_fn(values), Taps { taps, start }, wide);
            } else {
                out.fill(start);
                for (tap, &weight) in taps.iter().enumerate() {
                    out.iter_mut().zip(values(tap)).for_each(|(out, &value)| *out += weight * value);
                }
            }
            if row_step != out_width {
                for (out_row, row) in out_plane.chunks_exact_mut(out_width).zip(rows.chunks_exact(row_step)) {
                    out_row.copy_from_slice(&row[..out_width]);
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

/// Where a 3x3 convolution's nine taps read, output row by output row: row `y`'s tap `t` reads `width` values of
/// `values` from `starts[t] + y * step`.
struct Runs<'a> {
    values: &'a [f32],
    starts: [usize; 9],
    rows: usize,
    width: usize,
    step: usize,
}

/// A 3x3 convolution's output rows (`runs.rows` of `runs.width`, end to end in `out`) from `runs`: the sums of
/// [`run_3x3_plain`], in its order, so the same values to the bit, eight at a time with AVX where the processor has
/// it, straight into the output plane. Against one run a plane into rows a phase wide, then copied to the output:
/// FaceMesh's depthwise convolutions alone, each way in turn (300 pairs, 2026-12-02), took 0.85-0.88 of the time
/// over 128x128 to 32x32 planes, 0.76-0.78 over 16x16; each model loaded once and run both ways in turn, paired run
/// by run (200 pairs, twice, 2026-12-02), FaceMesh 0.97 (0.84 in a noisier minute), MiniFASNet 0.97-0.99, BlazeFace
/// 0.92-0.95, outputs bit-identical. `wide` as for [`run_3x3`].
fn rows_3x3(out: &mut [f32], runs: &Runs<'_>, kernel: Taps, wide: bool) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true when the processor has AVX.
        return unsafe { rows_3x3_avx(out, runs, kernel) };
    }
    let _ = wide;
    let &Runs { values, starts, width, step, .. } = runs;
    for (y, out) in out.chunks_exact_mut(width).take(runs.rows).enumerate() {
        run_3x3_plain(out, starts.map(|start| &values[start + y * step..][..width]), kernel);
    }
}

/// [`rows_3x3`] with AVX, for rows of at least eight values (asserted). Every index is checked once, before the loops.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn rows_3x3_avx(out: &mut [f32], runs: &Runs<'_>, kernel: Taps) {
    use std::arch::x86_64::*;
    let &Runs { values, starts, rows, width, step } = runs;
    assert!(rows > 0 && width >= 8 && out.len() >= rows * width);
    assert!(starts.iter().all(|&start| start + (rows - 1) * step + width <= values.len()));
    let weights: [__m256; 9] = kernel.taps.map(|tap| _mm256_set1_ps(tap));
    let start = _mm256_set1_ps(kernel.start);
    // A row whose width is not a multiple of eight ends with the eight values before its end, overlapping the
    // eight before them: those are computed again, to the same values.
    let last = width - 8;
    for y in 0..rows {
        let mut x = 0;
        loop {
            // SAFETY: `starts[t] + y * step + x + 8 <= starts[t] + (rows - 1) * step + width <= values.len()` and
            // `y * width + x + 8 <= rows * width <= out.len()`, asserted above.
            unsafe {
                let product = |t: usize| {
                    _mm256_mul_ps(weights[t], _mm256_loadu_ps(values.as_ptr().add(starts[t] + y * step + x)))
                };
                // As `run_3x3_plain` sums them.
                let top = _mm256_add_ps(_mm256_add_ps(product(0), product(1)), _mm256_add_ps(product(2), start));
                let middle = _mm256_add_ps(_mm256_add_ps(product(3), product(4)), product(5));
                let bottom = _mm256_add_ps(_mm256_add_ps(product(6), product(7)), product(8));
                let sum = _mm256_add_ps(top, _mm256_add_ps(middle, bottom));
                _mm256_storeu_ps(out.as_mut_ptr().add(y * width + x), sum);
            }
            if x == last {
                break;
            }
            x = (x + 8).min(last);
        }
    }
}

/// One run of a 3x3 convolution's outputs ([`run_3x3_plain`]); with `wide` (the processor has AVX, [`has_avx`])
/// the same code runs compiled for AVX.
fn run_3x3(out: &mut [f32], values: [&[f32]; 9], kernel: Taps, wide: bool) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true when the processor has AVX.
        return unsafe { run_3x3_avx(out, values, kernel) };
    }
    let _ = wide;
    run_3x3_plain(out, values, kernel)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn run_3x3_avx(out: &mut [f32], values: [&[f32]; 9], kernel: Taps) {
    run_3x3_plain(out, values, kernel)
}

/// One run of outputs: `out = start + sum of taps[t] * values[t]`, the nine value runs as long as `out`.
#[inline(always)]
fn run_3x3_plain(out: &mut [f32], values: [&[f32]; 9], kernel: Taps) {
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
            |input, side, [out_height, out_width], output| {
                self.apply(input, side, [out_height, out_width], output, out_height * out_width)
            },
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
