//! The models' one kind of max pooling (a 2x2 window, stride 2, no padding, channels first) as one tract
//! operator that halves each plane in a single pass. tract's general pooling walks a patch per output value and
//! took FaceMesh 1.4 ms of its 11 and BlazeFace 0.5 of its 3.3 (`examples/profile_models`); every other MaxPool
//! is left to tract.

use super::onnx::{eval_planes, rank4_unary_rules, TractBuilder};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// tract's own MaxPool builder, for the nodes [`HalvingMaxPool`] does not cover.
static TRACT_MAX_POOL: TractBuilder = TractBuilder::new("MaxPool");

/// Teaches a tract ONNX parser to read a 2x2, stride-2, unpadded `MaxPool` as [`HalvingMaxPool`].
pub fn register(onnx: &mut tract_onnx::Onnx) {
    TRACT_MAX_POOL.keep(onnx);
    onnx.op_register.insert("MaxPool", build);
}

fn build(context: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if halves_each_plane(node)? {
        return Ok((expand(HalvingMaxPoolExpansion), vec![]));
    }
    TRACT_MAX_POOL.build(context, node)
}

/// Whether the node is a 2x2 window moved 2 at a time, without padding, dilation, ceiling or indices.
fn halves_each_plane(node: &NodeProto) -> TractResult<bool> {
    let ints = |name: &str| node.get_attr_opt_tvec::<i64>(name);
    let kernel = ints("kernel_shape")?;
    let strides = ints("strides")?;
    let pads = ints("pads")?;
    let dilations = ints("dilations")?;
    let auto_pad = node.get_attr_opt::<&str>("auto_pad")?.unwrap_or("NOTSET");
    let ceil = node.get_attr_opt::<i64>("ceil_mode")?.unwrap_or(0);
    Ok(node.output.len() == 1
        && kernel.as_deref() == Some(&[2, 2])
        && strides.as_deref() == Some(&[2, 2])
        && pads.is_none_or(|pads| pads.iter().all(|&p| p == 0))
        && dilations.is_none_or(|d| d.iter().all(|&d| d == 1))
        && matches!(auto_pad, "NOTSET" | "VALID")
        && ceil == 0)
}

/// The ONNX node, typed: a float input of rank 4 (N, C, H, W), wired as a [`HalvingMaxPool`].
#[derive(Debug, Clone)]
struct HalvingMaxPoolExpansion;

impl Expansion for HalvingMaxPoolExpansion {
    fn name(&self) -> StaticName {
        "MaxPool".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        rank4_unary_rules(s, inputs, outputs)?;
        s.equals(&inputs[0].shape[0], &outputs[0].shape[0])?;
        s.equals(&inputs[0].shape[1], &outputs[0].shape[1])?;
        for axis in [2, 3] {
            s.given(&inputs[0].shape[axis], move |s, side| s.equals(&outputs[0].shape[axis], side / 2))?;
        }
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let input = model.outlet_fact(inputs[0])?;
        ensure!(
            input.datum_type == f32::datum_type(),
            "{prefix}: MaxPool on {:?}, only f32 is supported",
            input.datum_type
        );
        model.wire_node(prefix, HalvingMaxPool, &[inputs[0]])
    }
}

/// Max pooling over 2x2 windows with stride 2 on an (N, C, H, W) float tensor: each output value is the largest
/// of its four inputs; an odd last row or column is dropped, as unpadded pooling does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalvingMaxPool;

impl HalvingMaxPool {
    /// Pools `input` (planes of `height` x `width`, one after another) into `output` (planes of `out_height` x
    /// `out_width`, the halved sides, neither 0).
    fn apply(input: &[f32], [height, width]: [usize; 2], [out_height, out_width]: [usize; 2], output: &mut [f32]) {
        let planes = input.chunks_exact(height * width).zip(output.chunks_exact_mut(out_height * out_width));
        for (plane, pooled) in planes {
            for (y, out_row) in pooled.chunks_exact_mut(out_width).enumerate() {
                let top = &plane[2 * y * width..][..2 * out_width];
                let bottom = &plane[(2 * y + 1) * width..][..2 * out_width];
                let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                for (value, (top, bottom)) in out_row.iter_mut().zip(pairs) {
                    *value = top[0].max(top[1]).max(bottom[0].max(bottom[1]));
                }
            }
        }
    }
}

impl Op for HalvingMaxPool {
    fn name(&self) -> StaticName {
        "HalvingMaxPool".into()
    }

    op_as_typed_op!();
}

impl EvalOp for HalvingMaxPool {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        eval_planes(
            inputs,
            |height, width| Some([height / 2, width / 2]),
            |input, side, out_side, output| {
                Self::apply(input, side, out_side, output);
                Ok(())
            },
        )
    }
}

impl TypedOp for HalvingMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4, "MaxPool on a tensor of rank {}, expected 4", shape.rank());
        let halved = [shape[0].clone(), shape[1].clone(), shape[2].clone() / 2, shape[3].clone() / 2];
        Ok(tvec!(inputs[0].datum_type.fact(halved)))
    }

    as_op!();
}
