//! A depthwise convolution and the 1x1 convolution that alone reads it, as one operator: the depthwise output is
//! written to planes [`line_staggered`] apart instead of end to end, then read by the 1x1 convolution from there.
//! End to end, planes of 32x32, 64x64 or 128x128 values start a multiple of 4 KiB apart, so a tile's values of every
//! plane fall in one set of the first-level cache, more lines than it has ways, and the 1x1 convolution read them
//! from the next level: a 16->8 convolution over 128x128 planes took 1.4-2 times as long as over planes one cache
//! line out of step (`vision::pointwise` timed alone, 2026-12-02). FaceMesh runs 34 such pairs a frame, BlazeFace
//! 16: each model loaded with and without this operator in one process, paired run by run (200 pairs, twice,
//! 2026-12-02), FaceMesh took 0.96-0.99 of the time with it; outputs bit-identical.

use super::conv::line_staggered;
use super::depthwise::DepthwiseConv;
use super::onnx::unwritten_tensor;
use super::pointwise::{eval_images, PointwiseConv};
use tract_onnx::tract_hir::internal::*;

/// A depthwise convolution followed by the 1x1 convolution (with its PRelu and residual, if any) that alone reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeparableConv {
    depthwise: DepthwiseConv,
    pointwise: PointwiseConv,
}

impl SeparableConv {
    /// Runs both on one image's planes `input` of `side` into `output` (planes of `out_side`), adding `residual` if
    /// given.
    fn apply(
        &self,
        input: &[f32],
        side: [usize; 2],
        out_side: [usize; 2],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) -> TractResult<()> {
        let stride = line_staggered(out_side[0] * out_side[1]);
        let channels = input.len() / (side[0] * side[1]);
        // SAFETY: the depthwise convolution writes every value of each plane; the gaps between planes are not read.
        let mut between = unsafe { unwritten_tensor(&[channels * stride])? };
        let mut between = between.try_as_plain_ram_mut()?;
        let between = between.as_slice_mut::<f32>()?;
        self.depthwise.apply(input, side, out_side, between, stride)?;
        self.pointwise.apply_strided(between, stride, out_side, residual, output)
    }
}

/// Replaces each depthwise convolution of `model` read only by a 1x1 convolution of ours, and that convolution,
/// with one [`SeparableConv`].
pub fn fuse_separable_convs(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(pointwise) = node.op_as::<PointwiseConv>() else { continue };
        if !pointwise.is_one_by_one() {
            continue;
        }
        let source = node.inputs[0];
        let Some(depthwise) = model.node(source.node).op_as::<DepthwiseConv>() else { continue };
        if model.outlet_successors(source).len() != 1 || model.outputs.contains(&source) {
            continue;
        }
        let op = SeparableConv { depthwise: depthwise.clone(), pointwise: pointwise.clone() };
        let mut inputs = node.inputs.clone();
        inputs[0] = model.node(source.node).inputs[0];
        let mut patch = TypedModelPatch::new("separable convolution");
        let tapped = patch.taps(model, &inputs)?;
        let fused = patch.wire_node(&node.name, op, &tapped)?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), fused)?;
        patch.apply(model)?;
    }
    // The fused depthwise and 1x1 convolutions, read by nothing now, leave the graph.
    model.compact()
}

impl Op for SeparableConv {
    fn name(&self) -> StaticName {
        "SeparableConv".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SeparableConv {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let output_side = |[height, width]: [usize; 2]| self.depthwise.output_side(height, width);
        let output_channels = self.pointwise.output_channels();
        eval_images(
            &inputs,
            self.pointwise.adds_residual(),
            output_channels,
            output_side,
            |image, side, residual, out| {
                let out_side = output_side(side).context("kernel larger than the input")?;
                self.apply(image, side, out_side, residual, out)
            },
        )
    }
}

impl TypedOp for SeparableConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0].shape.as_concrete().context("separable convolution of a symbolic shape")?;
        let &[batch, _, height, width] = shape else {
            bail!("separable convolution of a tensor of shape {shape:?}, expected rank 4");
        };
        let [out_height, out_width] =
            self.depthwise.output_side(height, width).context("kernel larger than the input")?;
        Ok(tvec!(f32::fact([batch, self.pointwise.output_channels(), out_height, out_width])))
    }

    as_op!();
}
