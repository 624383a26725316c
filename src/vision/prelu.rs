//! PRelu as one tract operator: `y = x` where `x >= 0`, `slope * x` elsewhere, the slope per channel, in one pass
//! over memory. tract's own expansion of PRelu takes a comparison, a product and a select; the models' PRelu
//! activations then cost FaceMesh about 30 % of its time and MiniFASNet about a quarter (`examples/profile_models`).

use tract_onnx::tract_hir::internal::*;

/// Teaches a tract ONNX parser to read `PRelu` as [`FusedPrelu`].
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("PRelu", |_, _| Ok((expand(PreluExpansion), vec![])));
}

/// The ONNX node, typed: checks the slope is a constant with at most one axis longer than 1 (per channel), and
/// wires a [`FusedPrelu`].
#[derive(Debug, Clone)]
struct PreluExpansion;

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        "PRelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let input = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            input.datum_type == f32::datum_type(),
            "{prefix}: PRelu on {:?}, only f32 is supported",
            input.datum_type
        );
        let Some(slope) = model.outlet_fact(inputs[1])?.konst.clone() else {
            bail!("{prefix}: PRelu with a slope that is not a constant");
        };
        let slope = slope.cast_to::<f32>()?;
        let rank = input.rank();
        ensure!(slope.rank() <= rank, "{prefix}: PRelu slope of rank {} on an input of rank {rank}", slope.rank());
        // Numpy broadcasting aligns the slope's shape to the right of the input's.
        let offset = rank - slope.rank();
        let long_axes: Vec<usize> = (0..slope.rank()).filter(|&a| slope.shape()[a] > 1).map(|a| a + offset).collect();
        let channel_axis = match long_axes.as_slice() {
            [] => None,
            [axis] => Some(*axis),
            _ => bail!("{prefix}: PRelu slope of shape {:?} varies along more than one axis", slope.shape()),
        };
        let op = FusedPrelu { slopes: Arc::new(slope.into_owned()), channel_axis };
        model.wire_node(prefix, op, &[inputs[0]])
    }
}

/// PRelu with constant slopes, evaluated in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedPrelu {
    /// One slope, or one per position along `channel_axis`.
    slopes: Arc<Tensor>,
    channel_axis: Option<usize>,
}

impl FusedPrelu {
    fn apply(&self, values: &mut [f32], shape: &[usize]) -> TractResult<()> {
        let slopes = self.slopes.try_as_plain_ram()?.as_slice::<f32>()?;
        let Some(axis) = self.channel_axis else {
            let slope = slopes[0];
            values.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v *= slope);
            return Ok(());
        };
        ensure!(
            shape.get(axis) == Some(&slopes.len()),
            "PRelu: {} slopes for an input of shape {shape:?}",
            slopes.len()
        );
        let inner: usize = shape[axis + 1..].iter().product();
        if inner == 1 {
            // Channels last: each run of `slopes.len()` values is one position's channels.
            for run in values.chunks_exact_mut(slopes.len()) {
                for (value, slope) in run.iter_mut().zip(slopes) {
                    *value = if *value < 0.0 { *value * slope } else { *value };
                }
            }
        } else {
            for block in values.chunks_exact_mut(inner * slopes.len()) {
                for (plane, &slope) in block.chunks_exact_mut(inner).zip(slopes) {
                    plane.iter_mut().for_each(|value| *value = if *value < 0.0 { *value * slope } else { *value });
                }
            }
        }
        Ok(())
    }
}

impl Op for FusedPrelu {
    fn name(&self) -> StaticName {
        "FusedPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FusedPrelu {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // In place when this node is the value's only reader; otherwise one copy, still one pass.
        let mut values = input.into_tensor();
        let shape: TVec<usize> = values.shape().into();
        self.apply(values.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, &shape)?;
        Ok(tvec!(values.into_tvalue()))
    }
}

impl TypedOp for FusedPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}
