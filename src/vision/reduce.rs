//! Sums, and means of squares, of float tensors over some of their axes, as one operator of ours. The blendshapes
//! model normalises each of its 97 tokens over 64 channels 19 times (ONNX `ReduceMean`, which tract turns into
//! its `Reduce<Sum>` and `Reduce<MeanOfSquares>`). tract's reductions walk the input through ndarray's iterators,
//! which only an optimising build of tract-core makes fast: with tract-core at opt-level 0 (`Cargo.toml`, for a
//! short first build) they took 2.5 ms of the model's 3.8 against 0.3 at opt-level 1 (`examples/profile_models`,
//! 2026-12-01). Ours sums whole rows of the innermost axes at a time, each a loop the compiler vectorises.
//!
//! [`replace_reductions`] swaps ours in for tract's in an optimised model; other reducers (max, product, arg-max,
//! ...) and other datum types stay with tract.

use super::onnx::replace_ops;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::internal::*;

/// The sum of an f32 tensor's values (or of their squares, scaled to their mean) over `axes`, which stay in the
/// output with length 1, as tract's `Reduce` keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisSum {
    /// Increasing.
    axes: TVec<usize>,
    /// Sum squares and divide by how many were summed (tract's `MeanOfSquares`) rather than plainly sum.
    mean_of_squares: bool,
}

impl AxisSum {
    /// Ours for tract's `reduce` of an f32 tensor, when it sums or takes the mean of squares.
    fn for_reduce(reduce: &Reduce, datum_type: DatumType) -> Option<Self> {
        let mean_of_squares = match reduce.reducer {
            Reducer::Sum => false,
            Reducer::MeanOfSquares => true,
            _ => return None,
        };
        let increasing = reduce.axes.windows(2).all(|pair| pair[0] < pair[1]);
        (increasing && datum_type == f32::datum_type()).then(|| Self { axes: reduce.axes.clone(), mean_of_squares })
    }

    /// `input` (of `shape`) reduced, of `shape` with every reduced axis of length 1.
    fn reduce(&self, input: &[f32], shape: &[usize]) -> TractResult<Tensor> {
        if let Some(&axis) = self.axes.iter().find(|&&axis| axis >= shape.len()) {
            bail!("reducing axis {axis} of a tensor of rank {}", shape.len());
        }
        let mut shape = shape.to_vec();
        let mut values: Option<Vec<f32>> = None;
        // The innermost axis first; each pass leaves that axis of length 1 for the next.
        for &axis in self.axes.iter().rev() {
            let outer: usize = shape[..axis].iter().product();
            let inner: usize = shape[axis + 1..].iter().product();
            let square = self.mean_of_squares && values.is_none();
            let from = values.as_deref().unwrap_or(input);
            values = Some(sum_axis(from, [outer, shape[axis], inner], square));
            shape[axis] = 1;
        }
        let square = |value: f32| if self.mean_of_squares { value * value } else { value };
        let mut sums = values.unwrap_or_else(|| input.iter().map(|&value| square(value)).collect());
        if self.mean_of_squares && !sums.is_empty() {
            let scale = sums.len() as f32 / input.len() as f32;
            sums.iter_mut().for_each(|sum| *sum *= scale);
        }
        // The sums' own memory becomes the tensor's: no copy of it.
        Ok(tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&shape), sums)?.into_tensor())
    }
}

/// `values`, laid out as (outer, len, inner), summed over `len` (each squared first if `square`): (outer, inner).
fn sum_axis(values: &[f32], [outer, len, inner]: [usize; 3], square: bool) -> Vec<f32> {
    let mut sums = vec![0.0f32; outer * inner];
    if inner == 0 || len == 0 {
        return sums;
    }
    for (block, out) in values.chunks_exact(len * inner).zip(sums.chunks_exact_mut(inner)) {
        for row in block.chunks_exact(inner) {
            if square {
                out.iter_mut().zip(row).for_each(|(sum, &value)| *sum += value * value);
            } else {
                out.iter_mut().zip(row).for_each(|(sum, &value)| *sum += value);
            }
        }
    }
    sums
}

/// Replaces each of tract's sums and means of squares of f32 tensors in `model` with an [`AxisSum`].
pub fn replace_reductions(model: &mut TypedModel) -> TractResult<()> {
    replace_ops(model, AxisSum::for_reduce)
}

impl Op for AxisSum {
    fn name(&self) -> StaticName {
        if self.mean_of_squares { "AxisMeanOfSquares" } else { "AxisSum" }.into()
    }

    op_as_typed_op!();
}

impl EvalOp for AxisSum {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [input] = &inputs[..] else { bail!("{} inputs where one was expected", inputs.len()) };
        let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
        Ok(tvec!(self.reduce(values, input.shape())?.into_tvalue()))
    }
}

impl TypedOp for AxisSum {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut fact = inputs[0].without_value();
        for &axis in &self.axes {
            ensure!(axis < fact.rank(), "reducing axis {axis} of a tensor of rank {}", fact.rank());
            fact.shape.set(axis, 1.to_dim());
        }
        Ok(tvec!(fact))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tract's own reduction of `values` (of `shape`) over `axes`.
    fn by_tract(reducer: Reducer, axes: &[usize], values: &[f32], shape: &[usize]) -> Vec<f32> {
        let input = Tensor::from_shape(shape, values).unwrap();
        let output = reducer.reduce(axes, &input).unwrap();
        output.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn sums_and_means_of_squares_give_tracts_over_any_axes() {
        // The blendshapes model's (channels of each token), the last axis, several axes, all of them, none.
        let cases: [(&[usize], &[usize]); 6] = [
            (&[1, 64, 1, 97], &[1]),
            (&[1, 146, 2], &[2]),
            (&[2, 3, 4, 5], &[0, 2]),
            (&[2, 3, 4, 5], &[1, 2, 3]),
            (&[3, 7], &[0, 1]),
            (&[3, 7], &[]),
        ];
        for (shape, axes) in cases {
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
            for (reducer, mean_of_squares) in [(Reducer::Sum, false), (Reducer::MeanOfSquares, true)] {
                let ours = AxisSum { axes: axes.into(), mean_of_squares };
                let reduced = ours.reduce(&values, shape).unwrap();
                let got = reduced.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
                let want = by_tract(reducer, axes, &values, shape);
                let want_shape: Vec<usize> =
                    shape.iter().enumerate().map(|(axis, &d)| if axes.contains(&axis) { 1 } else { d }).collect();
                assert_eq!(reduced.shape(), &want_shape[..], "{shape:?} over {axes:?}");
                assert_eq!(got.len(), want.len(), "{shape:?} over {axes:?}");
                for (got, want) in got.iter().zip(&want) {
                    let close = (got - want).abs() <= 1e-4 * want.abs().max(1.0);
                    assert!(close, "{shape:?} over {axes:?}, squares {mean_of_squares}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn only_float_sums_and_means_of_squares_are_taken() {
        let reduce = |reducer| Reduce { axes: tvec![1], reducer };
        assert!(AxisSum::for_reduce(&reduce(Reducer::Sum), f32::datum_type()).is_some());
        assert!(AxisSum::for_reduce(&reduce(Reducer::MeanOfSquares), f32::datum_type()).is_some());
        assert!(AxisSum::for_reduce(&reduce(Reducer::Max), f32::datum_type()).is_none());
        assert!(AxisSum::for_reduce(&reduce(Reducer::Sum), i32::datum_type()).is_none());
    }

    #[test]
    fn an_axis_past_the_rank_is_an_error_not_a_panic() {
        let ours = AxisSum { axes: tvec![3], mean_of_squares: false };
        assert!(ours.reduce(&[1.0, 2.0], &[1, 2]).is_err());
    }
}
