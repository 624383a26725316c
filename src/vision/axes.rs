//! Axis moves (tract's `AxisOp::Move`) of float tensors as one operator of ours. The blendshapes model moves axes
//! 22 times a run, between its token mixing and its channel mixing; tract-data's move zeroes a new tensor and then
//! copies the values over one by one, at the opt-level 1 it is built with (`Cargo.toml`, for a short first build).
//! Ours relabels the shape when the move only passes axes of length 1 (the values keep their order: no copy at
//! all when nothing else reads the input), and otherwise transposes in one pass into an output it does not zero.
//!
//! [`replace_axis_moves`] swaps ours in for tract's in an optimised model; other datum types stay with tract.

use super::onnx::{replace_ops, unwritten_tensor};
use tract_onnx::tract_hir::internal::*;

/// Moves axis `from` of an f32 tensor to position `to`, the other axes keeping their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAxis {
    from: usize,
    to: usize,
}

impl MovedAxis {
    /// Ours for tract's axis move of an f32 tensor.
    fn for_axis_op(op: &AxisOp, datum_type: DatumType) -> Option<Self> {
        match op {
            &AxisOp::Move(from, to) if datum_type == f32::datum_type() => Some(Self { from, to }),
            _ => None,
        }
    }

    /// The input's axes in the output's order, `from` at `to`.
    fn moved<T: Clone>(&self, axes: &[T]) -> TractResult<TVec<T>> {
        ensure!(
            self.from < axes.len() && self.to < axes.len(),
            "moving axis {} to {} of rank {}",
            self.from,
            self.to,
            axes.len()
        );
        let mut moved: TVec<T> = axes.into();
        let axis = moved.remove(self.from);
        moved.insert(self.to, axis);
        Ok(moved)
    }

    /// The input seen as `[outer, p, q, inner]`, whose output is `[outer, q, p, inner]`: the moved axis is `p` when it
    /// moves toward the end, `q` when it moves toward the start.
    fn blocks(&self, shape: &[usize]) -> [usize; 4] {
        let (low, high) = (self.from.min(self.to), self.from.max(self.to));
        let product = |axes: &[usize]| axes.iter().product::<usize>();
        let (outer, inner) = (product(&shape[..low]), product(&shape[high + 1..]));
        if self.from < self.to {
            [outer, shape[low], product(&shape[low + 1..=high]), inner]
        } else {
            [outer, product(&shape[low..high]), shape[high], inner]
        }
    }
}

/// `input`, laid out `[outer, p, q, inner]`, written to `output` as `[outer, q, p, inner]`.
fn transpose_blocks(input: &[f32], output: &mut [f32], [_, p, q, inner]: [usize; 4]) {
    let block = p * q * inner;
    if block == 0 {
        return;
    }
    for (from, to) in input.chunks_exact(block).zip(output.chunks_exact_mut(block)) {
        if inner == 1 {
            for (j, row) in to.chunks_exact_mut(p).enumerate() {
                row.iter_mut().zip(from[j..].iter().step_by(q)).for_each(|(out, &value)| *out = value);
            }
        } else {
            for (j, row) in to.chunks_exact_mut(p * inner).enumerate() {
                for (i, run) in row.chunks_exact_mut(inner).enumerate() {
                    run.copy_from_slice(&from[(i * q + j) * inner..][..inner]);
                }
            }
        }
    }
}

/// Replaces each of tract's axis moves of f32 tensors in `model` with a [`MovedAxis`].
pub fn replace_axis_moves(model: &mut TypedModel) -> TractResult<()> {
    replace_ops(model, MovedAxis::for_axis_op)
}

impl Op for MovedAxis {
    fn name(&self) -> StaticName {
        "MovedAxis".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MovedAxis {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [input] = &inputs[..] else { bail!("{} inputs where one was expected", inputs.len()) };
        let shape = self.moved(input.shape())?;
        let blocks = self.blocks(input.shape());
        if blocks[1] == 1 || blocks[2] == 1 {
            // Only axes of length 1 are passed: the same values in the same order under the new shape.
            let mut tensor = inputs.into_iter().next().context("one input")?.into_tensor();
            tensor.set_shape(&shape)?;
            return Ok(tvec!(tensor.into_tvalue()));
        }
        // SAFETY: `transpose_blocks` writes every value of the output, which has as many as the input.
        let mut output = unsafe { unwritten_tensor(&shape)? };
        let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
        transpose_blocks(values, output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, blocks);
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for MovedAxis {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let dims: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        Ok(tvec!(inputs[0].datum_type.fact(&*self.moved(&dims)?)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_give_tracts_own_for_every_kind_of_move() {
        // The blendshapes model's (a transpose of tokens and channels, a move past an axis of length 1), then either
        // direction over several axes, with inner axes and without, and a move onto itself.
        let cases: [(&[usize], usize, usize); 8] = [
            (&[1, 1, 97, 64], 3, 1),
            (&[1, 64, 97, 1], 2, 3),
            (&[1, 97, 1, 64], 3, 1),
            (&[2, 3, 4, 5], 0, 3),
            (&[2, 3, 4, 5], 3, 0),
            (&[2, 3, 4, 5], 1, 2),
            (&[2, 3, 4, 5], 2, 1),
            (&[2, 3, 4, 5], 2, 2),
        ];
        for (shape, from, to) in cases {
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let input = Tensor::from_shape(shape, &values).unwrap();
            let want = input.moved_axis(from, to).unwrap();
            // Read by another node too (the input shared) and by this one alone: both paths of the relabelling.
            for shared in [true, false] {
                let input = input.clone().into_tvalue();
                let other_reader = shared.then(|| input.clone());
                let got = MovedAxis { from, to }.eval(&EvalContext::out_of_plan(), tvec![input]).unwrap();
                assert_eq!(got[0].shape(), want.shape(), "{shape:?} {from}->{to}");
                let got = got[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
                assert_eq!(got, want.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(), "{shape:?} {from}->{to}");
                if let Some(other) = other_reader {
                    assert_eq!(other.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(), &values[..]);
                }
            }
        }
    }

    #[test]
    fn only_float_moves_are_taken_and_an_axis_past_the_rank_is_an_error() {
        assert!(MovedAxis::for_axis_op(&AxisOp::Move(1, 3), f32::datum_type()).is_some());
        assert!(MovedAxis::for_axis_op(&AxisOp::Move(1, 3), i32::datum_type()).is_none());
        assert!(MovedAxis::for_axis_op(&AxisOp::Add(0), f32::datum_type()).is_none());
        let input = Tensor::from_shape(&[1, 2], &[1.0f32, 2.0]).unwrap().into_tvalue();
        assert!(MovedAxis { from: 0, to: 2 }.eval(&EvalContext::out_of_plan(), tvec![input]).is_err());
    }
}
