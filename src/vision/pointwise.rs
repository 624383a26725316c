//! Pointwise (1x1, stride 1, unpadded, ungrouped) convolutions as one tract operator, reading and writing planes
//! (channels first) directly. tract reshapes each one into a matrix product, packs the input into panels first
//! (another pass over memory) and then multiplies; FaceMesh's 1x1 convolutions over 128x128 planes of 8 to 16
//! channels spent more time moving memory than multiplying (`examples/profile_models`). Here each tile of 16
//! pixels is read once, from every input plane, and six (or four) output channels at a time are accumulated in
//! registers.
//! [`super::conv`] picks the nodes.
//!
//! The same operator takes a convolution over an image's few colour planes (a model's first layer): each output
//! pixel's patch of every plane counts as that many input channels, read from the planes split into their stride's
//! phases, so every tap reads a contiguous run. tract's direct convolution and its PRelu after it were FaceMesh's
//! costliest single nodes.

use super::conv::{output_side, ConvAttributes, ConvOperands, Phases};
use super::onnx::unwritten_tensor;
use super::prelu::prelu;
use super::wide::has_avx2_fma;
use tract_onnx::tract_hir::internal::*;

/// Pixels of one tile: two AVX registers of accumulators an output channel.
const TILE: usize = 16;
/// Output channels accumulated together: with [`TILE`], twelve AVX registers, enough multiply-adds in flight to
/// hide their latency. Against blocks of four (eight registers), each model loaded both ways in one process and
/// the two run in turn, paired run by run (150 pairs, twice, 2026-12-01, load about 1): blendshapes 0.92-0.94 of
/// the time, BlazeFace 0.955-0.975, FaceMesh and MiniFASNet 0.98 (their 8-channel convolutions still take blocks
/// of four).
const BLOCK: usize = 6;
/// The narrower block that ends a convolution whose output channels are not a multiple of [`BLOCK`].
const NARROW_BLOCK: usize = 4;

/// The widths of the blocks `output_channels` are computed in: blocks of [`BLOCK`], then, for what is left, one
/// or two of [`NARROW_BLOCK`] (eight channels as two blocks of four rather than one of six and one of two, which
/// would leave four of its twelve registers idle), or a last block of six partly used. Only the last block may
/// have fewer channels than its width.
fn block_widths(output_channels: usize) -> Vec<usize> {
    let (whole, rest) = (output_channels / BLOCK, output_channels % BLOCK);
    let mut widths = vec![BLOCK; whole];
    match rest {
        0 => {}
        2 if whole > 0 => {
            widths.pop();
            widths.extend([NARROW_BLOCK; 2]);
        }
        1..=NARROW_BLOCK => widths.push(NARROW_BLOCK),
        _ => widths.push(BLOCK),
    }
    widths
}

/// Pixels of one band: each block of output channels sweeps a band before the next block does, so the input it
/// reads again is still in cache and fewer planes are streamed at once.
const BAND: usize = 64 * TILE;
/// The fewest pixels left over from a row's tiles that are computed as one more tile, overlapping the one before,
/// rather than one by one: MiniFASNet's rows of 40 pixels (eight over) and its 10x10 and 5x5 planes (four and
/// nine) took 0.92-0.95 of the time that way (each model loaded once, the two ways run in turn, paired, 200 pairs,
/// twice, 2026-12-01); the blendshapes model's rows of 97 (one over) took 1.02, so a lone pixel stays on its own.
const MIN_OVERLAPPED: usize = 4;
/// Convolutions over at most this many input planes (an image's colours) are taken as patches ([`Patches`]).
const IMAGE_PLANES: usize = 4;

/// A convolution over an image's few planes, read as patches: kernel, strides and padding, undilated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Patches {
    planes: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    /// Top, left, bottom, right.
    pads: [usize; 4],
}

impl Patches {
    /// The output's height and width, `None` when the kernel does not fit.
    fn output_side(&self, side: [usize; 2]) -> Option<[usize; 2]> {
        output_side(side, self.kernel, self.strides, self.pads)
    }

    /// Each plane of `input` (planes of `side`) split into its phases ([`Phases`]), with, per tap (plane, dy,
    /// dx) in the weights' order, where the values it meets along output row 0 start, and the output rows; an
    /// error when the kernel does not fit.
    fn phases(&self, input: &[f32], side: [usize; 2]) -> TractResult<(Tensor, Vec<usize>, Rows)> {
        let [out_height, out_width] = self.output_side(side).context("kernel larger than the input")?;
        // Spread out: FaceMesh's 2x2 stride-2 convolutions read 64 to 256 phases of 64x64 down to 16x16 values,
        // each tap one phase. Each model loaded once and run both ways in turn, paired run by run (200 pairs, twice,
        // 2026-12-02): FaceMesh 0.99 of the time, outputs bit-identical.
        let layout = Phases::new(side, self.strides, self.pads).spread_out();
        let len = [self.planes * layout.len()];
        // SAFETY: every value of each plane's phases is written below, by `zero_padding` or by `split` (the gaps
        // between phases are never read). Clearing them all first was another pass over them (FaceMesh's first
        // layer: 800 KB a frame); each model loaded once and run both ways in turn, paired run by run (200 pairs,
        // twice, 2026-12-02): FaceMesh 0.99 of the time, outputs bit-identical.
        let mut phases = unsafe { unwritten_tensor(&len)? };
        let mut padded_row = layout.padded_row();
        let mut values = phases.try_as_plain_ram_mut()?;
        let planes = values.as_slice_mut::<f32>()?.chunks_exact_mut(layout.len());
        for (plane, into) in input.chunks_exact(side[0] * side[1]).zip(planes) {
            layout.zero_padding(into);
            layout.split(plane, &mut padded_row, into);
        }
        let [kernel_height, kernel_width] = self.kernel;
        let taps = (0..self.planes * kernel_height * kernel_width).map(|tap| {
            let (plane, dy, dx) =
                (tap / (kernel_height * kernel_width), tap / kernel_width % kernel_height, tap % kernel_width);
            plane * layout.len() + layout.tap_start(dy, dx)
        });
        let rows = match (Rows { count: out_height, len: out_width, step: layout.row_step() }) {
            // Rows that lie end to end (a kernel as large as its strides, over planes its strides divide: the
            // phases are then a space-to-depth rearrangement) are read as one: whole tiles, where FaceMesh's 8x8
            // and 16x16 outputs were all leftover pixels.
            rows if rows.step == rows.len => Rows { count: 1, len: rows.count * rows.len, step: 0 },
            rows => rows,
        };
        Ok((phases, taps.collect(), rows))
    }
}

/// A pointwise convolution of an (N, Cin, H, W) float tensor with constant weights (Cout, Cin, 1, 1) and an
/// optional constant bias (Cout).
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseConv {
    input_channels: usize,
    output_channels: usize,
    /// The widths of the blocks of output channels ([`block_widths`]).
    widths: Vec<usize>,
    /// The weights block by block, each block input channel by input channel, the block's weights of one input
    /// channel together; a last, partial block padded with zeros.
    packed: Vec<f32>,
    /// One value an output channel, padded with zeros as `packed`.
    bias: Vec<f32>,
    /// The weights input channel by input channel (Cin, Cout), for pixels left over from the tiles.
    by_input: Vec<f32>,
    /// A PRelu applied to each output value as it is written, one slope an output channel; padded as `packed`.
    /// `None` when no PRelu follows: the plain convolution.
    slopes: Option<Vec<f32>>,
    /// Whether a second input, of the output's shape, is added to each output value before the PRelu (a residual
    /// connection).
    adds_residual: bool,
    /// For a convolution over an image's planes, how its patches are read; its `input_channels` are then the
    /// patch's values (planes x kernel). `None`: a 1x1 convolution.
    patches: Option<Patches>,
}

impl Eq for PointwiseConv {}

impl PointwiseConv {
    /// Our operator for an ungrouped 1x1 convolution with stride 1 and no padding, or an ungrouped convolution
    /// read as patches: over at most [`IMAGE_PLANES`] planes, or whose kernel reads each input value once (its
    /// strides as large as the kernel, unpadded: FaceMesh's 2x2 stride-2 convolutions, where the phases are the
    /// space-to-depth rearrangement), or whose output is a single pixel (FaceMesh's heads).
    pub(super) fn for_conv(attributes: &ConvAttributes, operands: &ConvOperands) -> Option<Self> {
        let &ConvAttributes { groups, kernel, strides, pads } = attributes;
        let pointwise = *attributes == ConvAttributes { groups: 1, kernel: [1, 1], strides: [1, 1], pads: [0; 4] };
        let &[output_channels, planes, kernel_height, kernel_width] = operands.weights.shape() else { return None };
        let fits = planes == operands.input_channels && [kernel_height, kernel_width] == kernel && groups == 1;
        let strided = strides.iter().all(|&s| s > 0);
        let reads_once = kernel == strides && pads == [0; 4];
        let one_pixel = strided && output_side(operands.side, kernel, strides, pads) == Some([1, 1]);
        let patches = match (pointwise, strided && (planes <= IMAGE_PLANES || reads_once || one_pixel)) {
            _ if !fits => return None,
            (true, _) => None,
            (false, true) => Some(Patches { planes, kernel, strides, pads }),
            (false, false) => return None,
        };
        let input_channels = planes * kernel_height * kernel_width;
        let weights = operands.weights.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?;
        let bias = match &operands.bias {
            Some(bias) => Some(bias.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?),
            None => None,
        };
        Some(Self { patches, ..Self::new(weights, bias, input_channels, output_channels) })
    }

    /// From weights laid out (Cout, Cin) and a bias of Cout values.
    fn new(weights: &[f32], bias: Option<&[f32]>, input_channels: usize, output_channels: usize) -> Self {
        let widths = block_widths(output_channels);
        let padded: usize = widths.iter().sum();
        let mut packed = vec![0.0; padded * input_channels];
        let mut first = 0;
        for &width in &widths {
            let block = &mut packed[first * input_channels..][..width * input_channels];
            let rows = weights.chunks_exact(input_channels).skip(first).take(width);
            for (lane, row) in rows.enumerate() {
                for (input, &weight) in row.iter().enumerate() {
                    block[input * width + lane] = weight;
                }
            }
            first += width;
        }
        let mut padded_bias = vec![0.0; padded];
        if let Some(bias) = bias {
            padded_bias[..output_channels].copy_from_slice(bias);
        }
        let by_input = (0..input_channels)
            .flat_map(|input| (0..output_channels).map(move |output| (input, output)))
            .map(|(input, output)| weights[output * input_channels + input])
            .collect();
        Self {
            input_channels,
            output_channels,
            widths,
            packed,
            bias: padded_bias,
            by_input,
            slopes: None,
            adds_residual: false,
            patches: None,
        }
    }

    /// This convolution followed by a PRelu of `slopes` (one an output channel), and first, if `adds_residual`, the
    /// addition of a second input; `None` if it is already followed by one.
    fn with_prelu(&self, slopes: &[f32], adds_residual: bool) -> Option<Self> {
        if self.slopes.is_some() || slopes.len() != self.output_channels {
            return None;
        }
        let mut padded = vec![1.0; self.bias.len()];
        padded[..slopes.len()].copy_from_slice(slopes);
        Some(Self { slopes: Some(padded), adds_residual, ..self.clone() })
    }

    /// The output's height and width for an input of `side`.
    fn output_side(&self, side: [usize; 2]) -> Option<[usize; 2]> {
        self.patches.map_or(Some(side), |patches| patches.output_side(side))
    }

    /// Convolves one image's planes `input` (Cin planes of `side`) into `output` (Cout planes of
    /// [`PointwiseConv::output_side`]), adding `residual` (as `output`) if given, then the PRelu if there is one.
    fn apply(&self, input: &[f32], side: [usize; 2], residual: Option<&[f32]>, output: &mut [f32]) -> TractResult<()> {
        self.apply_on(input, side, residual, output, has_avx2_fma())
    }

    /// Whether this is a 1x1 convolution, which [`PointwiseConv::apply_strided`] takes (not one over patches).
    pub(super) fn is_one_by_one(&self) -> bool {
        self.patches.is_none()
    }

    /// Whether a second input, of the output's shape, is added before the PRelu (a residual connection).
    pub(super) fn adds_residual(&self) -> bool {
        self.adds_residual
    }

    /// The output channels.
    pub(super) fn output_channels(&self) -> usize {
        self.output_channels
    }

    /// A 1x1 convolution's [`PointwiseConv::apply`] on input planes of `side`, each `plane_stride` values after
    /// the one before.
    pub(super) fn apply_strided(
        &self,
        input: &[f32],
        plane_stride: usize,
        side: [usize; 2],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) -> TractResult<()> {
        ensure!(self.patches.is_none(), "planes apart read by a convolution over patches");
        let pixels = side[0] * side[1];
        let taps: Vec<usize> = (0..self.input_channels).map(|channel| channel * plane_stride).collect();
        ensure!(
            plane_stride >= pixels && taps.last().is_none_or(|&last| last + pixels <= input.len()),
            "{} input values for {} planes of {pixels}, {plane_stride} apart",
            input.len(),
            self.input_channels
        );
        let reading = Reading { values: input, taps: &taps, rows: Rows { count: 1, len: pixels, step: 0 } };
        self.run_on(&reading, residual, output, has_avx2_fma());
        Ok(())
    }

    /// [`PointwiseConv::apply`], with AVX2 and FMA if `wide` (only when the processor has them, [`has_avx2_fma`]).
    fn apply_on(
        &self,
        input: &[f32],
        side: [usize; 2],
        residual: Option<&[f32]>,
        output: &mut [f32],
        wide: bool,
    ) -> TractResult<()> {
        let pixels = side[0] * side[1];
        // Declared here so the reading may borrow what either arm makes.
        let (patched, phases, plain_taps): ((Tensor, Vec<usize>, Rows), _, Vec<usize>);
        let reading = match self.patches {
            Some(patches) => {
                patched = patches.phases(input, side)?;
                phases = patched.0.try_as_plain_ram()?;
                Reading { values: phases.as_slice::<f32>()?, taps: &patched.1, rows: patched.2 }
            }
            // A 1x1 convolution's plane is one row, every tap a plane.
            None => {
                plain_taps = (0..self.input_channels).map(|channel| channel * pixels).collect();
                Reading { values: input, taps: &plain_taps, rows: Rows { count: 1, len: pixels, step: 0 } }
            }
        };
        self.run_on(&reading, residual, output, wide);
        Ok(())
    }

    /// The convolution of `reading`, with AVX2 and FMA if `wide`, as for [`PointwiseConv::apply_on`].
    fn run_on(&self, reading: &Reading<'_>, residual: Option<&[f32]>, output: &mut [f32], wide: bool) {
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` is only true when the processor has AVX2 and FMA.
            return unsafe { self.apply_avx2_fma(reading, residual, output) };
        }
        let _ = wide;
        // FMA is part of the baseline on aarch64 (the Lambda functions' architecture), not on x86-64.
        self.apply_portable::<{ cfg!(target_arch = "aarch64") }>(reading, residual, output)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn apply_avx2_fma(&self, reading: &Reading<'_>, residual: Option<&[f32]>, output: &mut [f32]) {
        // The closure shares this function's AVX2 and FMA, so it may call the AVX2 twin.
        let sweep = |sweep: &Sweep<'_>, out: &mut [f32], added: Option<&[f32]>| sweep_avx2_fma(sweep, out, added);
        self.run::<true>(reading, residual, output, sweep)
    }

    /// The slope of output `channel`'s PRelu; 1 (no change) without one.
    fn slope(&self, channel: usize) -> f32 {
        self.slopes.as_ref().map_or(1.0, |slopes| slopes[channel])
    }

    /// The PRelu slopes of the `width` output channels from `first`; 1 (no change) without a PRelu.
    fn block_slopes(&self, first: usize, width: usize) -> [f32; BLOCK] {
        let mut slopes = [1.0; BLOCK];
        if let Some(padded) = &self.slopes {
            slopes[..width].copy_from_slice(&padded[first..][..width]);
        }
        slopes
    }

    /// With `FUSED`, each product and sum is one fused multiply-add (only where the processor has the
    /// instruction: elsewhere it is a slow library call).
    #[inline(always)]
    fn apply_portable<const FUSED: bool>(&self, reading: &Reading<'_>, residual: Option<&[f32]>, output: &mut [f32]) {
        self.run::<FUSED>(reading, residual, output, sweep::<FUSED>)
    }

    /// The convolution of `reading`, each block's run of whole tiles computed by `sweep` ([`sweep`] or its AVX2
    /// twin); `FUSED` as for [`PointwiseConv::apply_portable`], for the pixels left over.
    #[inline(always)]
    fn run<const FUSED: bool>(
        &self,
        &Reading { values, taps, rows }: &Reading<'_>,
        residual: Option<&[f32]>,
        output: &mut [f32],
        sweep: impl Fn(&Sweep<'_>, &mut [f32], Option<&[f32]>),
    ) {
        let multiply_add = |a: f32, b: f32, c: f32| if FUSED { a.mul_add(b, c) } else { a * b + c };
        let inputs = self.input_channels;
        let plane = rows.count * rows.len;
        let tiled = rows.len - rows.len % TILE;
        let mut row_taps = taps.to_vec();
        let mut sums = vec![0.0f32; self.output_channels];
        for y in 0..rows.count {
            for (row_tap, &tap) in row_taps.iter_mut().zip(taps) {
                *row_tap = tap + y * rows.step;
            }
            let row_start = y * rows.len;
            // Every block of output channels over `pixels` of this row (a whole number of tiles).
            let mut sweep_blocks = |pixels: std::ops::Range<usize>| {
                let mut first = 0;
                for &width in &self.widths {
                    // The block's planes of the output (and of the residual): fewer than its width in the last
                    // block when the output channels do not fill it.
                    let lanes = (self.output_channels - first).min(width);
                    let planes = first * plane..(first + lanes) * plane;
                    let step = Sweep {
                        weights: &self.packed[first * inputs..][..width * inputs],
                        bias: &self.bias[first..][..width],
                        slopes: self.block_slopes(first, width),
                        values,
                        taps: &row_taps,
                        pixels: pixels.clone(),
                        lanes,
                        plane,
                        row_start,
                    };
                    sweep(&step, &mut output[planes.clone()], residual.map(|residual| &residual[planes]));
                    first += width;
                }
            };
            for band in (0..tiled).step_by(BAND) {
                sweep_blocks(band..tiled.min(band + BAND));
            }
            // A row with enough pixels left over from its tiles ends with one more tile, over its last 16 pixels:
            // those the tiles before it covered are computed again, to the same values.
            let overlapped = rows.len - tiled >= MIN_OVERLAPPED && rows.len >= TILE;
            if overlapped {
                sweep_blocks(rows.len - TILE..rows.len);
            }
            // The pixels left over (rows of fewer than 16 pixels, or fewer than `MIN_OVERLAPPED` after a row's
            // tiles): one pixel at a time, all output channels together.
            for pixel in if overlapped { rows.len } else { tiled }..rows.len {
                sums.copy_from_slice(&self.bias[..self.output_channels]);
                for (&tap, weights) in row_taps.iter().zip(self.by_input.chunks_exact(self.output_channels)) {
                    let value = values[tap + pixel];
                    for (sum, &weight) in sums.iter_mut().zip(weights) {
                        *sum = multiply_add(weight, value, *sum);
                    }
                }
                for (channel, &sum) in sums.iter().enumerate() {
                    let at = channel * plane + row_start + pixel;
                    let added = residual.map_or(0.0, |residual| residual[at]);
                    output[at] = prelu(sum + added, self.slope(channel));
                }
            }
        }
    }
}

/// What a convolution reads: input channel `c` of output row `y` is the run of `values` from
/// `taps[c] + y * rows.step`.
struct Reading<'a> {
    values: &'a [f32],
    taps: &'a [usize],
    rows: Rows,
}

/// The output rows a convolution runs over: `count` rows of `len` pixels, each reading its inputs `step` values
/// further on than the row before.
#[derive(Debug, Clone, Copy)]
struct Rows {
    count: usize,
    len: usize,
    step: usize,
}

/// One block of output channels over whole tiles of one output row, from the bias through the PRelu: input
/// channel `c` of pixel `p` is `values[taps[c] + p]`; output channel `lane` of the block at pixel `p` is written at
/// `lane * plane + row_start + p` of the block's planes (and the residual, if any, read there).
struct Sweep<'a> {
    /// Input channel by input channel, the block's width of weights each.
    weights: &'a [f32],
    /// One bias a channel of the block's width ([`BLOCK`] or [`NARROW_BLOCK`]).
    bias: &'a [f32],
    /// One slope a channel of the block's width, then ones.
    slopes: [f32; BLOCK],
    values: &'a [f32],
    taps: &'a [usize],
    /// A whole number of tiles.
    pixels: std::ops::Range<usize>,
    /// The block's output channels that exist, 1 to its width.
    lanes: usize,
    plane: usize,
    row_start: usize,
}

/// The pointwise convolution the PRelu reading `input` can be done inside, with that PRelu (slopes `slopes` along
/// `channel_axis`, or one slope) taken in, and the inputs to wire it with. `input` is either the output of a
/// pointwise convolution that nothing else reads, or, when `summands` are given, a sum, read by nothing else, of
/// such an output read only by the addition and another tensor (a residual connection), which the convolution then
/// adds itself. `None` when neither holds.
pub(super) fn with_prelu_of(
    model: &TypedModel,
    input: OutletId,
    summands: Option<&[OutletId]>,
    slopes: &[f32],
    channel_axis: Option<usize>,
) -> Option<(PointwiseConv, TVec<OutletId>)> {
    // The convolution writing `outlet`, and its input, when exactly `readers` nodes read it.
    let convolution = |outlet: OutletId, readers: usize| {
        let node = model.node(outlet.node);
        let conv = node.op_as::<PointwiseConv>()?;
        let alone = model.outlet_successors(outlet).len() == readers && !model.outputs.contains(&outlet);
        alone.then_some((conv, node.inputs[0]))
    };
    let per_channel = |conv: &PointwiseConv| match (channel_axis, slopes) {
        (Some(1), _) => Some(slopes.to_vec()),
        (None, &[slope]) => Some(vec![slope; conv.output_channels]),
        _ => None,
    };
    match summands {
        None => {
            let (conv, from) = convolution(input, 0)?;
            Some((conv.with_prelu(&per_channel(conv)?, false)?, tvec![from]))
        }
        Some(&[a, b]) => [(a, b), (b, a)].into_iter().find_map(|(summand, other)| {
            let (conv, from) = convolution(summand, 1)?;
            Some((conv.with_prelu(&per_channel(conv)?, true)?, tvec![from, other]))
        }),
        Some(_) => None,
    }
}

/// Computes one [`Sweep`] into `out` (the block's planes), adding `residual` (the same planes of it) if given.
/// `FUSED` as for [`PointwiseConv::apply_portable`].
#[inline(always)]
fn sweep<const FUSED: bool>(sweep: &Sweep<'_>, out: &mut [f32], residual: Option<&[f32]>) {
    match sweep.bias.len() {
        BLOCK => sweep_block::<FUSED, BLOCK>(sweep, out, residual),
        _ => sweep_block::<FUSED, NARROW_BLOCK>(sweep, out, residual),
    }
}

/// [`sweep`] for a block `WIDTH` channels wide.
#[inline(always)]
fn sweep_block<const FUSED: bool, const WIDTH: usize>(sweep: &Sweep<'_>, out: &mut [f32], residual: Option<&[f32]>) {
    for start in sweep.pixels.clone().step_by(TILE) {
        let sums = tile_sums::<FUSED, WIDTH>(sweep.weights, sweep.bias, sweep.values, sweep.taps, start);
        for (lane, sums) in sums.iter().enumerate().take(sweep.lanes) {
            let at = lane * sweep.plane + sweep.row_start + start;
            let added = residual.map(|residual| &residual[at..][..TILE]);
            finish(&mut out[at..][..TILE], sums, added, sweep.slopes[lane]);
        }
    }
}

/// The sums of one tile: for each of a block's `WIDTH` output channels (`bias`, and `weights` input channel by
/// input channel, `WIDTH` each), its bias plus the weighted values of the [`TILE`] pixels from `start` of every
/// input channel (channel `c` from `input[taps[c]..]`). `FUSED` as for [`PointwiseConv::apply_portable`].
#[inline(always)]
fn tile_sums<const FUSED: bool, const WIDTH: usize>(
    weights: &[f32],
    bias: &[f32],
    input: &[f32],
    taps: &[usize],
    start: usize,
) -> [[f32; TILE]; WIDTH] {
    let mut sums = [[0.0f32; TILE]; WIDTH];
    for (sum, &bias) in sums.iter_mut().zip(bias) {
        *sum = [bias; TILE];
    }
    for (&tap, weights) in taps.iter().zip(weights.chunks_exact(WIDTH)) {
        let values = &input[tap + start..][..TILE];
        for (sum, &weight) in sums.iter_mut().zip(weights) {
            for (sum, &value) in sum.iter_mut().zip(values) {
                *sum = if FUSED { weight.mul_add(value, *sum) } else { weight * value + *sum };
            }
        }
    }
    sums
}

/// Writes a tile's `sums` of one output channel to `out`, plus `added` if given, through the PRelu of `slope`.
#[inline(always)]
fn finish(out: &mut [f32], sums: &[f32; TILE], added: Option<&[f32]>, slope: f32) {
    match added {
        Some(added) => {
            out.iter_mut().zip(sums).zip(added).for_each(|((out, &sum), &added)| *out = prelu(sum + added, slope))
        }
        None => out.iter_mut().zip(sums).for_each(|(out, &sum)| *out = prelu(sum, slope)),
    }
}

/// [`sweep`] written with AVX2 and FMA instructions: the compiler's own vectorisation of it came and went with
/// unrelated changes around it (once 17 times slower), so the hot loop does not depend on it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sweep_avx2_fma(sweep: &Sweep<'_>, out: &mut [f32], residual: Option<&[f32]>) {
    match sweep.bias.len() {
        BLOCK => sweep_block_avx2_fma::<BLOCK>(sweep, out, residual),
        _ => sweep_block_avx2_fma::<NARROW_BLOCK>(sweep, out, residual),
    }
}

/// [`sweep_avx2_fma`] for a block `WIDTH` channels wide. Every index is checked once before the loops, not in
/// them: with 8 to 16 input channels the checks and the tile's bookkeeping cost more than its multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sweep_block_avx2_fma<const WIDTH: usize>(sweep: &Sweep<'_>, out: &mut [f32], residual: Option<&[f32]>) {
    use std::arch::x86_64::*;
    const _: () = assert!(TILE == 16, "two registers of eight a channel");
    let &Sweep { weights, bias, slopes, values, taps, ref pixels, lanes, plane, row_start } = sweep;
    let end = pixels.end;
    assert!(pixels.len() % TILE == 0 && (1..=WIDTH).contains(&lanes) && bias.len() == WIDTH);
    assert!(weights.len() == taps.len() * WIDTH && taps.iter().all(|&tap| tap + end <= values.len()));
    let last = (lanes - 1) * plane + row_start + end;
    assert!(last <= out.len() && residual.is_none_or(|residual| last <= residual.len()));
    let bias: [__m256; WIDTH] = std::array::from_fn(|lane| _mm256_set1_ps(bias[lane]));
    let slopes: [__m256; WIDTH] = std::array::from_fn(|lane| _mm256_set1_ps(slopes[lane]));
    let zero = _mm256_setzero_ps();
    for start in pixels.clone().step_by(TILE) {
        let (mut low, mut high) = (bias, bias);
        for (&tap, weights) in taps.iter().zip(weights.chunks_exact(WIDTH)) {
            // SAFETY: `tap + start + 16 <= tap + end <= values.len()`, asserted above: two loads of eight.
            let (first, second) = unsafe {
                let at = values.as_ptr().add(tap + start);
                (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)))
            };
            for lane in 0..WIDTH {
                let weight = _mm256_set1_ps(weights[lane]);
                low[lane] = _mm256_fmadd_ps(weight, first, low[lane]);
                high[lane] = _mm256_fmadd_ps(weight, second, high[lane]);
            }
        }
        for lane in 0..lanes.min(WIDTH) {
            let at = lane * plane + row_start + start;
            // SAFETY: `at + 16 <= last`, which is at most the length of `out` and `residual`, asserted above.
            unsafe {
                let (mut first, mut second) = (low[lane], high[lane]);
                if let Some(residual) = residual {
                    first = _mm256_add_ps(first, _mm256_loadu_ps(residual.as_ptr().add(at)));
                    second = _mm256_add_ps(second, _mm256_loadu_ps(residual.as_ptr().add(at + 8)));
                }
                for (value, half) in [(first, 0), (second, 8)] {
                    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(value, zero);
                    let result = _mm256_blendv_ps(value, _mm256_mul_ps(value, slopes[lane]), negative);
                    _mm256_storeu_ps(out.as_mut_ptr().add(at + half), result);
                }
            }
        }
    }
}

impl Op for PointwiseConv {
    fn name(&self) -> StaticName {
        if self.patches.is_some() { "PatchConv" } else { "PointwiseConv" }.into()
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseConv {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let planes = self.patches.map_or(self.input_channels, |patches| patches.planes);
        let output_side = |side| self.output_side(side);
        eval_images(&inputs, self.adds_residual, self.output_channels, output_side, |image, side, residual, out| {
            ensure!(
                image.len() == planes * side[0] * side[1],
                "{} input values, expected {planes} planes",
                image.len()
            );
            self.apply(image, side, residual, out)
        })
    }
}

/// Evaluates an operator of ours that maps each image of an (N, C, H, W) float input (and, when it `adds_residual`,
/// of a second input of the output's shape) to `output_channels` planes of the side `output_side` gives:
/// `apply(image, [height, width], residual, output)` must write every value of its image's output, which is not
/// zeroed first. An empty input or output plane gives the (empty or zero) output without calling `apply`.
pub(super) fn eval_images(
    inputs: &[TValue],
    adds_residual: bool,
    output_channels: usize,
    output_side: impl Fn([usize; 2]) -> Option<[usize; 2]>,
    mut apply: impl FnMut(&[f32], [usize; 2], Option<&[f32]>, &mut [f32]) -> TractResult<()>,
) -> TractResult<TVec<TValue>> {
    let (input, residual) = match inputs {
        [input] if !adds_residual => (input, None),
        [input, residual] if adds_residual => (input, Some(residual)),
        _ => bail!("{} inputs to a convolution (residual: {adds_residual})", inputs.len()),
    };
    let &[batch, channels, height, width] = input.shape() else {
        bail!("an input of shape {:?}, expected rank 4", input.shape());
    };
    let [out_height, out_width] = output_side([height, width]).context("kernel larger than the input")?;
    let (pixels, out_pixels) = (height * width, out_height * out_width);
    let shape = [batch, output_channels, out_height, out_width];
    if pixels == 0 || out_pixels == 0 {
        return Ok(tvec!(Tensor::zero::<f32>(&shape)?.into_tvalue()));
    }
    // SAFETY: `apply` writes every value of each image's output, as this function's contract asks.
    let mut output = unsafe { unwritten_tensor(&shape)? };
    let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
    let residual_ram = residual.map(|residual| residual.try_as_plain_ram()).transpose()?;
    let residual = residual_ram.as_ref().map(|ram| ram.as_slice::<f32>()).transpose()?;
    let out_size = output_channels * out_pixels;
    if let Some(residual) = residual {
        let expected = batch * out_size;
        ensure!(residual.len() == expected, "a residual of {} values, not {expected}", residual.len());
    }
    let mut planes = output.try_as_plain_ram_mut()?;
    let outputs = planes.as_slice_mut::<f32>()?.chunks_exact_mut(out_size);
    for (index, (image, out)) in values.chunks_exact(channels * pixels).zip(outputs).enumerate() {
        let residual = residual.map(|residual| &residual[index * out_size..][..out_size]);
        apply(image, [height, width], residual, out)?;
    }
    Ok(tvec!(output.into_tvalue()))
}

impl TypedOp for PointwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0].shape.as_concrete().context("pointwise convolution of a symbolic shape")?;
        let &[batch, _, height, width] = shape else {
            bail!("pointwise convolution of a tensor of shape {shape:?}, expected rank 4");
        };
        let [out_height, out_width] = self.output_side([height, width]).context("kernel larger than the input")?;
        Ok(tvec!(f32::fact([batch, self.output_channels, out_height, out_width])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution computed the plain way: `output[o][p] = bias[o] + sum over i of weights[o][i] * input[i][p]`.
    fn by_hand(weights: &[f32], bias: &[f32], input: &[f32], inputs: usize, pixels: usize) -> Vec<f32> {
        let outputs = bias.len();
        (0..outputs * pixels)
            .map(|at| {
                let (output, pixel) = (at / pixels, at % pixels);
                let products = (0..inputs).map(|i| f64::from(weights[output * inputs + i] * input[i * pixels + pixel]));
                (f64::from(bias[output]) + products.sum::<f64>()) as f32
            })
            .collect()
    }

    #[test]
    fn every_path_gives_the_convolution_by_hand() {
        // Whole tiles only, tiles and a few leftover pixels, tiles and enough leftover pixels to end with an
        // overlapping tile (20, 45, 25, 2100), leftover pixels only (the models' 2x2 planes), several bands and a part;
        // output channels a multiple of the block or not.
        for (inputs, outputs, pixels) in [
            (16, 8, 64),
            (8, 16, 35),
            (3, 5, 20),
            (128, 64, 4),
            (5, 3, 1),
            (8, 6, 2100),
            (16, 7, 48),
            (12, 97, 80),
            (8, 16, 45),
            (6, 5, 25),
        ] {
            let weights: Vec<f32> = (0..inputs * outputs).map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0).collect();
            let bias: Vec<f32> = (0..outputs).map(|o| o as f32 * 0.25 - 0.5).collect();
            let input: Vec<f32> = (0..inputs * pixels).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
            let want = by_hand(&weights, &bias, &input, inputs, pixels);
            let op = PointwiseConv::new(&weights, Some(&bias), inputs, outputs);
            let mut runs = vec![("dispatched", vec![0.0; outputs * pixels]), ("plain", vec![0.0; outputs * pixels])];
            op.apply(&input, [1, pixels], None, &mut runs[0].1).unwrap();
            op.apply_on(&input, [1, pixels], None, &mut runs[1].1, false).unwrap();
            for (path, got) in &runs {
                for (at, (got, want)) in got.iter().zip(&want).enumerate() {
                    let close = (got - want).abs() <= 1e-4 * want.abs().max(1.0);
                    assert!(close, "{path} {inputs}->{outputs} x {pixels}: value {at} is {got}, want {want}");
                }
            }
        }
    }

    #[test]
    fn the_prelu_and_residual_inside_give_them_by_hand_on_every_path() {
        // Tiles and leftover pixels, one by one or as an overlapping tile, leftover pixels only, a last block of one
        // channel, several bands.
        for (inputs, outputs, pixels) in [(8, 16, 35), (3, 5, 4), (3, 5, 20), (8, 6, 2100), (8, 6, 25)] {
            let weights: Vec<f32> = (0..inputs * outputs).map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0).collect();
            let bias: Vec<f32> = (0..outputs).map(|o| o as f32 * 0.25 - 0.5).collect();
            let slopes: Vec<f32> = (0..outputs).map(|o| [-5.25, 0.25, 19.8125][o % 3]).collect();
            let input: Vec<f32> = (0..inputs * pixels).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
            let residual: Vec<f32> = (0..outputs * pixels).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
            let want: Vec<f32> = by_hand(&weights, &bias, &input, inputs, pixels)
                .iter()
                .zip(&residual)
                .enumerate()
                .map(|(at, (conv, added))| {
                    let sum = conv + added;
                    if sum < 0.0 {
                        sum * slopes[at / pixels]
                    } else {
                        sum
                    }
                })
                .collect();
            let op = PointwiseConv::new(&weights, Some(&bias), inputs, outputs).with_prelu(&slopes, true).unwrap();
            assert!(op.with_prelu(&slopes, false).is_none(), "one PRelu only");
            let (mut dispatched, mut plain) = (vec![0.0; outputs * pixels], vec![0.0; outputs * pixels]);
            op.apply(&input, [1, pixels], Some(&residual), &mut dispatched).unwrap();
            op.apply_on(&input, [1, pixels], Some(&residual), &mut plain, false).unwrap();
            for got in [dispatched, plain] {
                for (got, want) in got.iter().zip(&want) {
                    assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{inputs}->{outputs}: {got} vs {want}");
                }
            }
        }
    }

    /// A convolution over `planes` planes of `side`, computed the plain way (weights (Cout, planes, k, k)).
    fn patches_by_hand(
        weights: &[f32],
        bias: &[f32],
        input: &[f32],
        patches: Patches,
        [height, width]: [usize; 2],
    ) -> Vec<f32> {
        let [out_height, out_width] = patches.output_side([height, width]).unwrap();
        let ([kh, kw], [sy, sx], [top, left, ..]) = (patches.kernel, patches.strides, patches.pads);
        let mut out = Vec::new();
        for (o, &b) in bias.iter().enumerate() {
            for y in 0..out_height {
                for x in 0..out_width {
                    let mut sum = f64::from(b);
                    for (p, dy, dx) in (0..patches.planes * kh * kw).map(|t| (t / (kh * kw), t / kw % kh, t % kw)) {
                        let (iy, ix) = ((y * sy + dy).checked_sub(top), (x * sx + dx).checked_sub(left));
                        if let (Some(iy), Some(ix)) = (iy.filter(|&iy| iy < height), ix.filter(|&ix| ix < width)) {
                            let weight = weights[((o * patches.planes + p) * kh + dy) * kw + dx];
                            sum += f64::from(weight * input[(p * height + iy) * width + ix]);
                        }
                    }
                    out.push(sum as f32);
                }
            }
        }
        out
    }

    #[test]
    fn patches_of_an_image_give_the_convolution_by_hand_on_every_path() {
        // FaceMesh's and MiniFASNet's first layers (3x3, stride 2), BlazeFace's (5x5, stride 2), a stride of 1 and
        // one of 3; rows of whole tiles, of tiles and leftover pixels (MiniFASNet's rows of 40 end with an
        // overlapping tile), of leftover pixels only. Then FaceMesh's
        // 2x2 stride-2 convolutions over many planes and its heads (2x2 over a 2x2 input, one output pixel).
        let cases = [
            (3, 16, 3, 2, [0, 0, 1, 1], [64, 64]),
            (3, 5, 3, 2, [1, 1, 1, 1], [40, 38]),
            (3, 6, 3, 2, [1, 1, 1, 1], [80, 80]),
            (3, 24, 5, 2, [1, 1, 2, 2], [32, 32]),
            (1, 4, 3, 1, [1, 1, 1, 1], [9, 7]),
            (2, 8, 3, 3, [0, 2, 1, 0], [20, 50]),
            (16, 16, 2, 2, [0; 4], [64, 64]),
            (64, 128, 2, 2, [0; 4], [8, 8]),
            (128, 7, 2, 1, [0; 4], [2, 2]),
        ];
        for (planes, outputs, k, stride, pads, side) in cases {
            let patches = Patches { planes, kernel: [k, k], strides: [stride, stride], pads };
            let inputs = planes * k * k;
            let weights: Vec<f32> = (0..inputs * outputs).map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0).collect();
            let bias: Vec<f32> = (0..outputs).map(|o| o as f32 * 0.25 - 0.5).collect();
            let slopes: Vec<f32> = (0..outputs).map(|o| [-5.25, 0.25, 19.8125][o % 3]).collect();
            let input: Vec<f32> =
                (0..planes * side[0] * side[1]).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
            let [out_height, out_width] = patches.output_side(side).unwrap();
            let out_pixels = out_height * out_width;
            let want: Vec<f32> = patches_by_hand(&weights, &bias, &input, patches, side)
                .into_iter()
                .enumerate()
                .map(|(at, sum)| if sum < 0.0 { sum * slopes[at / out_pixels] } else { sum })
                .collect();
            let op =
                PointwiseConv { patches: Some(patches), ..PointwiseConv::new(&weights, Some(&bias), inputs, outputs) }
                    .with_prelu(&slopes, false)
                    .unwrap();
            for wide in [has_avx2_fma(), false] {
                let mut got = vec![f32::NAN; outputs * out_pixels];
                op.apply_on(&input, side, None, &mut got, wide).unwrap();
                for (at, (got, want)) in got.iter().zip(&want).enumerate() {
                    let close = (got - want).abs() <= 1e-4 * want.abs().max(1.0);
                    assert!(
                        close,
                        "{k}x{k} stride {stride} pads {pads:?}, wide {wide}: value {at} is {got}, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_cover_the_output_channels_with_at_most_one_partly_used() {
        for (channels, widths) in [
            (1, vec![4]),
            (3, vec![4]),
            (5, vec![6]),
            (6, vec![6]),
            (7, vec![6, 4]),
            (8, vec![4, 4]),
            (16, vec![6, 6, 4]),
            (32, vec![6, 6, 6, 6, 4, 4]),
            (97, [vec![6; 16], vec![4]].concat()),
        ] {
            assert_eq!(block_widths(channels), widths, "{channels} channels");
        }
        for channels in 1..300 {
            let widths = block_widths(channels);
            let padded: usize = widths.iter().sum();
            let last = widths.last().copied().unwrap_or(0);
            assert!(padded >= channels && padded - channels < last, "{channels}: {widths:?}");
        }
    }

    #[test]
    fn no_bias_is_a_bias_of_zeros() {
        let weights = [1.0, 2.0, -1.0, 0.5];
        let op = PointwiseConv::new(&weights, None, 2, 2);
        let mut output = [0.0; 2];
        op.apply(&[3.0, 4.0], [1, 1], None, &mut output).unwrap();
        assert_eq!(output, [11.0, -1.0]);
    }
}
