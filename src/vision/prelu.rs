//! PRelu as one tract operator: `y = x` where `x >= 0`, `slope * x` elsewhere, the slope per channel, in one pass
//! over memory. tract's own expansion of PRelu takes a comparison, a product and a select; the models' PRelu
//! activations then cost FaceMesh about 30 % of its time and MiniFASNet about a quarter (`examples/profile_models`).

use super::pointwise::with_prelu_of;
use super::wide::has_avx;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_hir::internal::*;

/// Teaches a tract ONNX parser to read `PRelu`, and `Relu` (a PRelu of slope 0), as [`FusedPrelu`] or inside the
/// pointwise convolution before it: BlazeFace's 16 residual blocks end in an addition and a `Relu`, which tract ran
/// as two passes over memory.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("PRelu", |_, _| Ok((expand(PreluExpansion { relu: false }), vec![])));
    onnx.op_register.insert("Relu", |_, _| Ok((expand(PreluExpansion { relu: true }), vec![])));
}

/// The ONNX node, typed: checks the slope is a constant with at most one axis longer than 1 (per channel), and
/// wires it ([`wire_prelu`]).
#[derive(Debug, Clone)]
struct PreluExpansion {
    /// A `Relu`: one input, the slope 0.
    relu: bool,
}

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        if self.relu { "Relu" } else { "PRelu" }.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, if self.relu { 1 } else { 2 })?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        if self.relu {
            return wire_prelu(prefix, model, inputs[0], &tensor0(0.0f32));
        }
        let Some(slope) = model.outlet_fact(inputs[1])?.konst.clone() else {
            bail!("{prefix}: PRelu with a slope that is not a constant");
        };
        wire_prelu(prefix, model, inputs[0], &slope)
    }
}

/// Wires the PRelu of `input` with the constant `slope`: inside the pointwise convolution that writes `input` (or
/// one of its summands) where [`with_prelu_of`] finds one, as a [`FusedPrelu`] otherwise.
fn wire_prelu(prefix: &str, model: &mut TypedModel, input: OutletId, slope: &Tensor) -> TractResult<TVec<OutletId>> {
    let fact = model.outlet_fact(input)?.clone();
    ensure!(fact.datum_type == f32::datum_type(), "{prefix}: PRelu on {:?}, only f32 is supported", fact.datum_type);
    let slope = slope.cast_to::<f32>()?;
    let rank = fact.rank();
    ensure!(slope.rank() <= rank, "{prefix}: PRelu slope of rank {} on an input of rank {rank}", slope.rank());
    // Numpy broadcasting aligns the slope's shape to the right of the input's.
    let offset = rank - slope.rank();
    let long_axes: Vec<usize> = (0..slope.rank()).filter(|&a| slope.shape()[a] > 1).map(|a| a + offset).collect();
    let channel_axis = match long_axes.as_slice() {
        [] => None,
        [axis] => Some(*axis),
        _ => bail!("{prefix}: PRelu slope of shape {:?} varies along more than one axis", slope.shape()),
    };
    let summands = summands(model, input)?;
    let slopes = slope.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    if let Some((conv, conv_inputs)) = with_prelu_of(model, input, summands.as_deref(), &slopes, channel_axis) {
        return model.wire_node(prefix, conv, &conv_inputs);
    }
    let op = FusedPrelu { slopes: Arc::new(slope.into_owned()), channel_axis };
    match summands {
        Some(summands) => model.wire_node(prefix, op, &summands),
        None => model.wire_node(prefix, op, &[input]),
    }
}

/// The two inputs of the sum `input` is, when it is an addition of two tensors of its own shape read by nothing
/// else so far: the PRelu then adds them itself, in the same pass (FaceMesh adds each residual block's input back
/// just before its PRelu, 34 times). The addition, read by nothing else, is then never run; if a later node reads
/// it after all, it runs for that node and the result is the same.
fn summands(model: &TypedModel, input: OutletId) -> TractResult<Option<TVec<OutletId>>> {
    let node = model.node(input.node);
    let Some(op) = node.op_as::<TypedBinOp>() else { return Ok(None) };
    let shape = &model.outlet_fact(input)?.shape;
    let alike = |outlet: &OutletId| -> TractResult<bool> {
        let fact = model.outlet_fact(*outlet)?;
        Ok(fact.datum_type == f32::datum_type() && fact.shape == *shape)
    };
    let read_elsewhere = !model.outlet_successors(input).is_empty();
    if op.0.name() != "Add"
        || read_elsewhere
        || node.inputs.len() != 2
        || !alike(&node.inputs[0])?
        || !alike(&node.inputs[1])?
    {
        return Ok(None);
    }
    // The first summand is overwritten in place when nothing else reads it: first the one only the addition reads.
    let [a, b] = [node.inputs[0], node.inputs[1]];
    let only_added = |outlet: OutletId| model.outlet_successors(outlet).len() == 1;
    Ok(Some(if !only_added(a) && only_added(b) { tvec![b, a] } else { tvec![a, b] }))
}

/// PRelu with constant slopes, evaluated in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedPrelu {
    /// One slope, or one per position along `channel_axis`.
    slopes: Arc<Tensor>,
    channel_axis: Option<usize>,
}

impl FusedPrelu {
    /// PRelu of `values`, or of `values + addend` when there is one, written over `values` in one pass.
    fn apply(&self, values: &mut [f32], shape: &[usize], addend: Option<&[f32]>) -> TractResult<()> {
        let slopes = self.slopes.try_as_plain_ram()?.as_slice::<f32>()?;
        if let Some(addend) = addend {
            ensure!(addend.len() == values.len(), "PRelu: adding {} values to {}", addend.len(), values.len());
        }
        // Runs of values that share a slope (a plane, or everything with one slope), or, channels last, runs of
        // one position's channels, each with its own slope.
        let (run, slope_per_value) = match self.channel_axis {
            None => (values.len(), false),
            Some(axis) => {
                ensure!(
                    shape.get(axis) == Some(&slopes.len()),
                    "PRelu: {} slopes for an input of shape {shape:?}",
                    slopes.len()
                );
                let inner: usize = shape[axis + 1..].iter().product();
                if inner == 1 {
                    (slopes.len(), true)
                } else {
                    (inner, false)
                }
            }
        };
        if run == 0 {
            return Ok(());
        }
        let wide = has_avx();
        for (r, values) in values.chunks_exact_mut(run).enumerate() {
            let added = addend.map(|addend| &addend[r * run..(r + 1) * run]);
            let slopes = if slope_per_value { Slopes::PerValue(slopes) } else { Slopes::One(slopes[r % slopes.len()]) };
            prelu_run(values, added, slopes, wide);
        }
        Ok(())
    }
}

/// The slopes of one run of values.
#[derive(Clone, Copy)]
enum Slopes<'a> {
    /// Each value its own.
    PerValue(&'a [f32]),
    /// All values the same.
    One(f32),
}

/// PRelu of one run of `values` (plus `added`), in place. With `wide` (the processor has AVX, [`has_avx`]) the
/// same code runs compiled for AVX: 8 values an instruction instead of 4.
fn prelu_run(values: &mut [f32], added: Option<&[f32]>, slopes: Slopes<'_>, wide: bool) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true when the processor has AVX.
        return unsafe { prelu_run_avx(values, added, slopes) };
    }
    let _ = wide;
    prelu_run_portable(values, added, slopes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn prelu_run_avx(values: &mut [f32], added: Option<&[f32]>, slopes: Slopes<'_>) {
    prelu_run_portable(values, added, slopes)
}

/// PRelu of one value: itself when not negative, `slope` times it otherwise.
#[inline(always)]
pub(super) fn prelu(value: f32, slope: f32) -> f32 {
    if value < 0.0 {
        value * slope
    } else {
        value
    }
}

#[inline(always)]
fn prelu_run_portable(values: &mut [f32], added: Option<&[f32]>, slopes: Slopes<'_>) {
    match (slopes, added) {
        (Slopes::PerValue(slopes), None) => values.iter_mut().zip(slopes).for_each(|(v, &s)| *v = prelu(*v, s)),
        (Slopes::PerValue(slopes), Some(added)) => {
            values.iter_mut().zip(added).zip(slopes).for_each(|((v, &a), &s)| *v = prelu(*v + a, s))
        }
        (Slopes::One(slope), None) => values.iter_mut().for_each(|v| *v = prelu(*v, slope)),
        (Slopes::One(slope), Some(added)) => values.iter_mut().zip(added).for_each(|(v, &a)| *v = prelu(*v + a, slope)),
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

    fn eval(&self, _context: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(matches!(inputs.len(), 1 | 2), "PRelu with {} inputs", inputs.len());
        let addend = if inputs.len() == 2 { inputs.pop() } else { None };
        // In place when this node is the value's only reader; otherwise one copy, still one pass.
        let mut values = inputs.remove(0).into_tensor();
        let shape: TVec<usize> = values.shape().into();
        let addend_ram = addend.as_ref().map(|addend| addend.try_as_plain_ram()).transpose()?;
        let addend_values = addend_ram.as_ref().map(|ram| ram.as_slice::<f32>()).transpose()?;
        self.apply(values.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, &shape, addend_values)?;
        Ok(tvec!(values.into_tvalue()))
    }
}

impl TypedOp for FusedPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every run length from empty to past several vector widths, each value of the run once negative: the AVX
    /// path and the portable one give PRelu by hand exactly, with and without an addend, one slope or many.
    #[test]
    fn both_paths_give_prelu_by_hand_for_every_run_length() {
        for len in 0..70 {
            let x: Vec<f32> = (0..len).map(|i| ((i * 37) % 23) as f32 - 11.5).collect();
            let added: Vec<f32> = (0..len).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
            let slopes: Vec<f32> = (0..len).map(|i| [-5.25, 0.25, 19.8125][i % 3]).collect();
            let prelu = |v: f32, s: f32| if v >= 0.0 { v } else { s * v };
            for wide in [false, has_avx()] {
                let mut one = x.clone();
                prelu_run(&mut one, None, Slopes::One(0.125), wide);
                assert_eq!(one, x.iter().map(|&v| prelu(v, 0.125)).collect::<Vec<_>>(), "len {len}, wide {wide}");
                let mut each = x.clone();
                prelu_run(&mut each, Some(&added), Slopes::PerValue(&slopes), wide);
                let want: Vec<f32> = (0..len).map(|i| prelu(x[i] + added[i], slopes[i])).collect();
                assert_eq!(each, want, "len {len}, wide {wide}, with an addend");
            }
        }
    }
}
