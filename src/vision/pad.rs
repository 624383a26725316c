//! Constant padding of float tensors as one tract operator that copies the input in contiguous runs. BlazeFace pads
//! its channels with zeros before each residual addition (24 planes of 64x64 into 28, say); tract's `Pad` fills
//! the output and assigns the input through an n-dimensional slice, value by value: 0.77 ms of the detector's
//! 2.1 (`examples/profile_models`, 2026-12-01). Here every run of the input that stays contiguous in the output
//! (everything from the last padded axis inwards: all the planes of a batch item when only channels are padded, one
//! row when rows are) is one copy.
//!
//! tract's optimised model keeps its own operator for other datum types and for reflected or repeated edges;
//! [`replace_pads`] swaps in ours where it applies.

use super::onnx::{replace_ops, unwritten_tensor};
use tract_onnx::tract_core::ops::array::{Pad, PadMode};
use tract_onnx::tract_hir::internal::*;

/// Padding of an f32 tensor with a constant: `pads[axis]` values before and after along each axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPad {
    pads: Vec<(usize, usize)>,
    /// The constant, a scalar tensor as tract's `Pad` holds it.
    value: Arc<Tensor>,
}

impl RunPad {
    /// Ours for tract's `pad` of an f32 tensor, when it pads with a constant.
    fn for_pad(pad: &Pad, datum_type: DatumType) -> Option<Self> {
        let PadMode::Constant(value) = &pad.mode else { return None };
        let readable = value.cast_to_scalar::<f32>().is_ok();
        (readable && datum_type == f32::datum_type()).then(|| RunPad { pads: pad.pads.clone(), value: value.clone() })
    }

    /// `input` padded.
    fn pad(&self, input: &Tensor) -> TractResult<Tensor> {
        let shape = input.shape();
        if shape.len() != self.pads.len() {
            bail!("padding a tensor of rank {} with {} pads", shape.len(), self.pads.len());
        }
        let out_shape = self.padded_shape(shape);
        // SAFETY: `apply` fills the whole output with the constant before copying the input in, or copies the
        // input over all of it when nothing is padded.
        let mut output = unsafe { unwritten_tensor(&out_shape)? };
        let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut out = output.try_as_plain_ram_mut()?;
        self.apply(values, shape, self.value.cast_to_scalar::<f32>()?, out.as_slice_mut::<f32>()?);
        Ok(output)
    }

    /// The shape of a tensor of `shape` padded.
    fn padded_shape(&self, shape: &[usize]) -> Vec<usize> {
        shape.iter().zip(&self.pads).map(|(&d, &(before, after))| d + before + after).collect()
    }

    /// Writes `input` (of `shape`) padded into `output`, which holds the padded shape's values.
    fn apply(&self, input: &[f32], shape: &[usize], value: f32, output: &mut [f32]) {
        let Some(last) = self.pads.iter().rposition(|&(before, after)| before + after > 0) else {
            output.copy_from_slice(input);
            return;
        };
        output.fill(value);
        let run: usize = shape[last..].iter().product();
        if run == 0 {
            return;
        }
        let out_shape = self.padded_shape(shape);
        let mut out_strides = vec![1usize; shape.len()];
        for axis in (0..shape.len() - 1).rev() {
            out_strides[axis] = out_strides[axis + 1] * out_shape[axis + 1];
        }
        for (index, values) in input.chunks_exact(run).enumerate() {
            // `index` counts the runs over the axes before `last`, the innermost of them fastest.
            let mut rest = index;
            let mut start = self.pads[last].0 * out_strides[last];
            for axis in (0..last).rev() {
                start += (rest % shape[axis] + self.pads[axis].0) * out_strides[axis];
                rest /= shape[axis];
            }
            output[start..start + run].copy_from_slice(values);
        }
    }
}

/// Replaces each of tract's constant `Pad`s of f32 tensors in `model` with a [`RunPad`].
pub fn replace_pads(model: &mut TypedModel) -> TractResult<()> {
    replace_ops(model, RunPad::for_pad)
}

impl Op for RunPad {
    fn name(&self) -> StaticName {
        "RunPad".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RunPad {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [input] = &inputs[..] else { bail!("{} inputs where one was expected", inputs.len()) };
        Ok(tvec!(self.pad(input)?.into_tvalue()))
    }
}

impl TypedOp for RunPad {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut fact = inputs[0].without_value();
        if self.pads.len() != fact.rank() {
            bail!("padding a tensor of rank {} with {} pads", fact.rank(), self.pads.len());
        }
        for (axis, &(before, after)) in self.pads.iter().enumerate() {
            fact.shape.set(axis, fact.shape[axis].clone() + before + after);
        }
        Ok(tvec!(fact))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Padding by hand, value by value: the output index of every input value.
    fn pad_by_hand(input: &[f32], shape: &[usize], pads: &[(usize, usize)], value: f32) -> Vec<f32> {
        let out_shape: Vec<usize> = shape.iter().zip(pads).map(|(&d, &(b, a))| d + b + a).collect();
        let mut output = vec![value; out_shape.iter().product()];
        for (flat, &v) in input.iter().enumerate() {
            let (mut rest, mut out_flat) = (flat, 0);
            let mut stride = 1;
            let mut offsets = vec![0; shape.len()];
            for axis in (0..shape.len()).rev() {
                offsets[axis] = rest % shape[axis] + pads[axis].0;
                rest /= shape[axis];
            }
            for axis in (0..shape.len()).rev() {
                out_flat += offsets[axis] * stride;
                stride *= out_shape[axis];
            }
            output[out_flat] = v;
        }
        output
    }

    fn run(shape: &[usize], pads: &[(usize, usize)], value: f32) -> Vec<f32> {
        let input: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 + 1.0).collect();
        let op = RunPad { pads: pads.to_vec(), value: Arc::new(value.into()) };
        let tensor = Tensor::from_shape(shape, &input).unwrap();
        let output = op.pad(&tensor).unwrap();
        let got = output.to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<_>>();
        assert_eq!(got, pad_by_hand(&input, shape, pads, value), "{shape:?} {pads:?}");
        got
    }

    #[test]
    fn channels_rows_and_any_axis_pad_as_value_by_value() {
        run(&[1, 3, 4, 5], &[(0, 0), (0, 2), (0, 0), (0, 0)], 0.0);
        run(&[2, 3, 4, 5], &[(0, 0), (1, 2), (0, 0), (0, 0)], 0.0);
        run(&[1, 2, 4, 5], &[(0, 0), (0, 0), (1, 1), (2, 1)], -1.5);
        run(&[2, 3, 2, 2], &[(1, 0), (0, 1), (2, 0), (0, 3)], 7.0);
        run(&[3, 4], &[(0, 0), (0, 0)], 0.0);
    }

    #[test]
    fn an_empty_input_gives_the_padding_alone() {
        assert_eq!(run(&[1, 0, 2, 2], &[(0, 0), (0, 1), (0, 0), (0, 0)], 3.0), vec![3.0; 4]);
    }

    #[test]
    fn only_constant_pads_of_floats_are_ours() {
        let constant = Pad { pads: vec![(0, 1)], mode: PadMode::Constant(Arc::new(0.5f32.into())) };
        let ours = RunPad { pads: vec![(0, 1)], value: Arc::new(0.5f32.into()) };
        assert_eq!(RunPad::for_pad(&constant, f32::datum_type()), Some(ours));
        assert_eq!(RunPad::for_pad(&constant, i32::datum_type()), None);
        assert_eq!(RunPad::for_pad(&Pad { pads: vec![(0, 1)], mode: PadMode::Edge }, f32::datum_type()), None);
    }
}
