//! ONNX `Conv` nodes read by an operator of ours where one fits: depthwise convolutions ([`super::depthwise`]),
//! pointwise (1x1) ones and those over an image's few colour planes ([`super::pointwise`]). tract's own
//! convolution, built from the same attributes, takes the rest: grouped convolutions that are not depthwise,
//! dilated or automatically padded ones, other kernels over more planes.

use super::depthwise::DepthwiseConv;
use super::onnx::TractBuilder;
use super::pointwise::PointwiseConv;
#[cfg(target_arch = "x86_64")]
use super::wide::has_avx2;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::cnn::{Conv, PaddingSpec};

/// tract's own Conv builder, for the nodes none of ours covers.
static TRACT_CONV: TractBuilder = TractBuilder::new("Conv");

/// Teaches a tract ONNX parser to read a `Conv` it can as one of our operators.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    TRACT_CONV.keep(onnx);
    onnx.op_register.insert("Conv", build);
}

fn build(context: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if let Some(expansion) = ConvExpansion::for_node(node)? {
        return Ok((expand(expansion), vec![]));
    }
    TRACT_CONV.build(context, node)
}

/// An undilated 2-D convolution's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConvAttributes {
    pub groups: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
}

/// A convolution's operands once wired: a float (N, C, H, W) input of concrete shape, constant float weights and,
/// if given, a constant float bias of one value an output channel.
pub(super) struct ConvOperands {
    pub input_channels: usize,
    /// The input planes' height and width.
    pub side: [usize; 2],
    pub weights: Arc<Tensor>,
    pub bias: Option<Arc<Tensor>>,
}

impl ConvOperands {
    /// The operands of the convolution reading `inputs`, or `None` when one is not as described.
    fn of(model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<Self>> {
        let input = model.outlet_fact(inputs[0])?;
        let shape = input.shape.as_concrete().filter(|s| s.len() == 4);
        let (Some(&[_, input_channels, height, width]), true) = (shape, input.datum_type == f32::datum_type()) else {
            return Ok(None);
        };
        let Some(weights) = model.outlet_fact(inputs[1])?.konst.clone() else { return Ok(None) };
        if weights.datum_type() != f32::datum_type() || weights.rank() != 4 {
            return Ok(None);
        }
        let bias = match inputs.get(2) {
            None => None,
            Some(&bias) => match model.outlet_fact(bias)?.konst.clone() {
                Some(bias) if bias.datum_type() == f32::datum_type() && bias.len() == weights.shape()[0] => Some(bias),
                _ => return Ok(None),
            },
        };
        Ok(Some(Self { input_channels, side: [height, width], weights, bias }))
    }
}

/// A 2-D `Conv` node with explicit (or no) padding, undilated, wired as ours when its operands fit one of our
/// operators, as tract's own otherwise.
#[derive(Debug, Clone)]
struct ConvExpansion {
    attributes: ConvAttributes,
    tract_conv: Conv,
}

impl ConvExpansion {
    /// The expansion for an undilated 2-D convolution with explicit (or no) padding; `None` for the rest.
    fn for_node(node: &NodeProto) -> TractResult<Option<Self>> {
        let ints = |name: &str| node.get_attr_opt_tvec::<usize>(name);
        let groups = node.get_attr_opt::<i64>("group")?.unwrap_or(1);
        let auto_pad = node.get_attr_opt::<&str>("auto_pad")?.unwrap_or("NOTSET");
        let (Some(kernel), strides, pads, dilations) =
            (ints("kernel_shape")?, ints("strides")?, ints("pads")?, ints("dilations")?)
        else {
            return Ok(None);
        };
        let strides = strides.unwrap_or_else(|| tvec![1, 1]);
        let pads = pads.unwrap_or_else(|| tvec![0; 4]);
        let plain = groups >= 1
            && auto_pad == "NOTSET"
            && kernel.len() == 2
            && strides.len() == 2
            && pads.len() == 4
            && dilations.is_none_or(|d| d.iter().all(|&d| d == 1))
            && matches!(node.input.len(), 2 | 3);
        if !plain {
            return Ok(None);
        }
        let mut tract_conv = Conv::default()
            .padding(PaddingSpec::Explicit(pads[..2].into(), pads[2..].into()))
            .kernel_shape(kernel.clone())
            .group(groups as usize)
            .strides(strides.clone());
        if node.input.len() == 3 {
            tract_conv = tract_conv.bias_input(2);
        }
        let attributes = ConvAttributes {
            groups: groups as usize,
            kernel: [kernel[0], kernel[1]],
            strides: [strides[0], strides[1]],
            pads: [pads[0], pads[1], pads[2], pads[3]],
        };
        Ok(Some(Self { attributes, tract_conv }))
    }
}

impl Expansion for ConvExpansion {
    fn name(&self) -> StaticName {
        "Conv".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.tract_conv.rules(s, inputs, outputs)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        if let Some(operands) = ConvOperands::of(model, inputs)? {
            if let Some(op) = DepthwiseConv::for_conv(&self.attributes, &operands) {
                return model.wire_node(prefix, op, &[inputs[0]]);
            }
            if let Some(op) = PointwiseConv::for_conv(&self.attributes, &operands) {
                return model.wire_node(prefix, op, &[inputs[0]]);
            }
        }
        self.tract_conv.wire(prefix, model, inputs)
    }
}

/// The output's height and width of a convolution with `kernel`, `strides` and `pads` (top, left, bottom, right)
/// over planes of `side`; `None` when the kernel does not fit the padded plane.
pub(super) fn output_side(
    side: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
) -> Option<[usize; 2]> {
    let [top, left, bottom, right] = pads;
    let out = |input: usize, padding: usize, kernel: usize, stride: usize| {
        (input + padding).checked_sub(kernel).map(|span| span / stride + 1)
    };
    Some([out(side[0], top + bottom, kernel[0], strides[0])?, out(side[1], left + right, kernel[1], strides[1])?])
}

/// Deals a padded row out to `stride` phases: value `stride * i + p` goes to `phases[p * phase_stride + i]`.
fn deal_out(padded_row: &[f32], stride: usize, phases: &mut [f32], phase_stride: usize) {
    for (i, group) in padded_row.chunks_exact(stride).enumerate() {
        for (phase, &value) in group.iter().enumerate() {
            phases[phase * phase_stride + i] = value;
        }
    }
}

/// Deals `row` out in pairs: value `2 i` to `first[i]`, value `2 i + 1` to `second[i]` (the models' only stride,
/// 2). `first` holds at least half of `row`'s values rounded up, `second` half rounded down.
fn deal_pairs(row: &[f32], first: &mut [f32], second: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let done = if has_avx2() {
        // SAFETY: the processor has AVX2.
        unsafe { deal_pairs_avx2(row, first, second) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (at, &value) in row.iter().enumerate().skip(done) {
        if at % 2 == 0 {
            first[at / 2] = value;
        } else {
            second[at / 2] = value;
        }
    }
}

/// [`deal_pairs`] sixteen values at a time with AVX2, as many whole sixteens as `row`, `first` and `second` hold;
/// returns how many values of `row` it dealt out. The compiler left the plain loop scalar, one value at a time:
/// MiniFASNet's stride-2 depthwise convolutions spent 40 % of their time dealing out rows. With this (and
/// MiniFASNet's last depthwise convolution as one sum a plane), each model loaded once and run both ways in turn,
/// paired run by run (200 pairs, twice, 2026-12-02, load about 1): MiniFASNet 0.92-0.93 of the time, FaceMesh
/// (its 2x2 stride-2 convolutions) 0.94, BlazeFace 0.95-0.97; outputs bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn deal_pairs_avx2(row: &[f32], first: &mut [f32], second: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let sixteens = (row.len() / 16).min(first.len() / 8).min(second.len() / 8);
    for k in 0..sixteens {
        // SAFETY: `16 k + 16 <= row.len()` and `8 k + 8` is at most the length of `first` and of `second`.
        unsafe {
            let low = _mm256_loadu_ps(row.as_ptr().add(16 * k));
            let high = _mm256_loadu_ps(row.as_ptr().add(16 * k + 8));
            // Per 128-bit half: values 0, 2 of `low`, 0, 2 of `high` (then 1, 3 of each); the 64-bit permute puts
            // the halves in order.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(low, high);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(low, high);
            let in_order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
            _mm256_storeu_ps(first.as_mut_ptr().add(8 * k), in_order(even));
            _mm256_storeu_ps(second.as_mut_ptr().add(8 * k), in_order(odd));
        }
    }
    16 * sixteens
}

/// A plane padded with zeros and split into its strides' phases: phase (py, px) holds the padded rows py,
/// py + stride, ... and of them the columns px, px + stride, .... A kernel's tap (dy, dx) then meets, along an
/// output row, a contiguous run of one phase, and output rows lie one phase row apart.
#[derive(Debug, Clone, Copy)]
pub(super) struct Phases {
    strides: [usize; 2],
    /// The plane's height and width, and its top and left padding.
    side: [usize; 2],
    before: [usize; 2],
    /// Each phase's height and width.
    phase_side: [usize; 2],
    /// How far apart consecutive phases start: their length, or more ([`Phases::spread_out`]).
    phase_stride: usize,
}

/// Values a float plane of `len` takes when planes are laid [`line_staggered`] apart: a whole number of 64-byte
/// lines, an odd number of them, so consecutive planes start in different sets of the first-level cache. Laid end to
/// end, planes a multiple of 4 KiB long (32x32, 64x64, 128x128 floats) start in one set: a 1x1 convolution reading a
/// tile of every plane then finds more lines in that set than it has ways, and reads each from the next level.
pub(super) fn line_staggered(len: usize) -> usize {
    const LINE: usize = 16;
    (len.div_ceil(LINE) | 1) * LINE
}

impl Phases {
    /// The phases of planes of `side`, padded by `pads` (top, left, bottom, right), for `strides`.
    pub(super) fn new(side: [usize; 2], strides: [usize; 2], pads: [usize; 4]) -> Self {
        let [top, left, bottom, right] = pads;
        let padded = [side[0] + top + bottom, side[1] + left + right];
        let phase_side = [padded[0].div_ceil(strides[0]), padded[1].div_ceil(strides[1])];
        let phase_stride = phase_side[0] * phase_side[1];
        Self { strides, side, before: [top, left], phase_side, phase_stride }
    }

    /// The same phases laid [`line_staggered`] apart, the gaps between them never written nor read.
    pub(super) fn spread_out(self) -> Self {
        Self { phase_stride: line_staggered(self.phase_stride), ..self }
    }

    /// Writes a zero wherever `phases` (one plane's, [`Phases::len`] values) hold the border's padding, the values
    /// [`Phases::split`] does not write; the gaps between phases laid out [`Phases::spread_out`] are left as they are.
    /// A buffer split into after this needs no clearing first.
    pub(super) fn zero_padding(&self, phases: &mut [f32]) {
        let ([stride_y, stride_x], [top, left], [height, width]) = (self.strides, self.before, self.side);
        let [phase_height, phase_width] = self.phase_side;
        for (phase_y, phase_x) in (0..stride_y).flat_map(|py| (0..stride_x).map(move |px| (py, px))) {
            let phase = &mut phases[(phase_y * stride_x + phase_x) * self.phase_stride..][..phase_height * phase_width];
            // Phase column j holds padded column `phase_x + j * stride_x`: the plane's columns are j in first..end.
            let first = left.saturating_sub(phase_x).div_ceil(stride_x).min(phase_width);
            let end = (left + width).saturating_sub(phase_x).div_ceil(stride_x).min(phase_width);
            for (i, row) in phase.chunks_exact_mut(phase_width).enumerate() {
                let padded_y = phase_y + i * stride_y;
                if padded_y < top || padded_y >= top + height {
                    row.fill(0.0);
                } else {
                    row[..first].fill(0.0);
                    row[end..].fill(0.0);
                }
            }
        }
    }

    /// How many values one plane's phases take.
    pub(super) fn len(&self) -> usize {
        self.strides[0] * self.strides[1] * self.phase_stride
    }

    /// How far apart consecutive output rows read (a phase's width).
    pub(super) fn row_step(&self) -> usize {
        self.phase_side[1]
    }

    /// Where tap (dy, dx) meets its first value, for output row 0.
    pub(super) fn tap_start(&self, dy: usize, dx: usize) -> usize {
        let [stride_y, stride_x] = self.strides;
        let phase = (dy % stride_y) * stride_x + dx % stride_x;
        phase * self.phase_stride + dy / stride_y * self.phase_side[1] + dx / stride_x
    }

    /// Scratch for [`Phases::split`]: one padded row.
    pub(super) fn padded_row(&self) -> Vec<f32> {
        vec![0.0; self.strides[1] * self.phase_side[1]]
    }

    /// Writes `plane` into `phases` ([`Phases::len`] values or more, zero where the padding falls: only where the
    /// plane's values go is written, so a buffer reused for planes of one shape keeps its zeros). `padded_row` is
    /// from [`Phases::padded_row`], reused likewise.
    pub(super) fn split(&self, plane: &[f32], padded_row: &mut [f32], phases: &mut [f32]) {
        let ([stride_y, stride_x], [top, left], width) = (self.strides, self.before, self.side[1]);
        let (phase_stride, phase_width) = (self.phase_stride, self.phase_side[1]);
        for (y, row) in plane.chunks_exact(width).enumerate() {
            let padded_y = y + top;
            let at = (padded_y % stride_y) * stride_x * phase_stride + padded_y / stride_y * phase_width;
            match stride_x {
                1 => phases[at + left..][..width].copy_from_slice(row),
                // Padded column `left + x` goes to phase `(left + x) % 2`, at `(left + x) / 2`: the row is dealt
                // out where it lies, not copied into `padded_row` first.
                2 => {
                    let (even, odd) = phases[at..].split_at_mut(phase_stride);
                    let (even, odd) = (&mut even[..phase_width], &mut odd[..phase_width]);
                    match left % 2 {
                        0 => deal_pairs(row, &mut even[left / 2..], &mut odd[left / 2..]),
                        _ => deal_pairs(row, &mut odd[left / 2..], &mut even[left / 2 + 1..]),
                    }
                }
                _ => {
                    padded_row[left..][..width].copy_from_slice(row);
                    deal_out(padded_row, stride_x, &mut phases[at..], phase_stride);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpadded_split_writes_every_value_and_a_padded_one_writes_the_rest_when_its_padding_is_zeroed() {
        // FaceMesh's 2x2 stride-2 downsampling, a stride of 1, and rows whose width the stride does not divide.
        for (side, strides, pads, fills) in [
            ([8, 6], [2, 2], [0; 4], true),
            ([5, 4], [1, 1], [0; 4], true),
            ([8, 7], [2, 2], [0; 4], false),
            ([8, 6], [2, 2], [0, 0, 1, 1], false),
            ([8, 6], [1, 1], [1, 1, 1, 1], false),
            // Rows long enough for sixteen values at a time, after an odd and an even left border.
            ([5, 40], [2, 2], [1, 1, 1, 1], false),
            ([4, 37], [2, 2], [1, 2, 1, 0], false),
            ([4, 35], [3, 3], [1, 1, 1, 1], false),
        ] {
            let (layout, spread) = (Phases::new(side, strides, pads), Phases::new(side, strides, pads).spread_out());
            for (layout, spread_out) in [(layout, false), (spread, true)] {
                let case = format!("{side:?} {strides:?} {pads:?}, spread out {spread_out}");
                let plane: Vec<f32> = (0..side[0] * side[1]).map(|v| v as f32).collect();
                let mut phases = vec![f32::NAN; layout.len()];
                layout.split(&plane, &mut layout.padded_row(), &mut phases);
                // Each value of the plane lands once, where its tap reads it.
                let mut landed = 0;
                for (y, row) in plane.chunks_exact(side[1]).enumerate() {
                    for (x, &value) in row.iter().enumerate() {
                        let (padded_y, padded_x) = (y + pads[0], x + pads[1]);
                        let at = layout.tap_start(padded_y % strides[0], padded_x % strides[1])
                            + padded_y / strides[0] * layout.row_step()
                            + padded_x / strides[1];
                        assert_eq!(phases[at], value, "{case}: ({y}, {x})");
                        landed += 1;
                    }
                }
                let written = phases.iter().filter(|v| !v.is_nan()).count();
                // With the padding zeroed as well, every value a tap can read is written: the split into a
                // cleared buffer, value for value.
                layout.zero_padding(&mut phases);
                let mut cleared = vec![0.0; layout.len()];
                layout.split(&plane, &mut layout.padded_row(), &mut cleared);
                for (at, (&value, &want)) in phases.iter().zip(&cleared).enumerate() {
                    let in_gap = at % layout.phase_stride >= layout.phase_side[0] * layout.phase_side[1];
                    assert!(if in_gap { value.is_nan() } else { value == want }, "{case}: value {at}");
                }
                // Unpadded, the phases hold the plane's values and nothing else (spread out, the gaps stay as
                // they were).
                if fills {
                    assert_eq!(written, landed, "{case}: a value left unwritten or one written twice");
                }
                if spread_out {
                    let phase_count = strides[0] * strides[1];
                    assert_eq!(layout.len() % (16 * phase_count), 0, "{case}: phases a whole number of lines apart");
                    assert_eq!(layout.len() / phase_count / 16 % 2, 1, "{case}: an odd number of lines apart");
                }
            }
        }
    }
}
