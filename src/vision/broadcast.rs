//! ONNX `Mul` and `Sub` whose two inputs have different shapes (one repeated along some axes) as one tract
//! operator of ours: the blendshapes model's layer norms subtract each row's mean and scale by each row's spread
//! this way, and tract runs such products and differences through a general element-by-element walk (0.45 ms of
//! the model's 1.4, `examples/profile_models`). Ours walks the output row by row, the innermost axis as a plain
//! loop: 0.06 ms. The operation itself gives exactly tract's results; tract arranges the reductions around it a
//! little differently (they take 0.12 ms more), so the model's outputs move within the parity tests' tolerance and
//! the model runs in 1.20 ms instead of 1.41. Inputs of one shape, or where one is a single value, stay with tract,
//! which has fast paths for those. Of the other models only MiniFASNet V1SE (off by default) has such products:
//! three channel scalings in its squeeze-and-excitation blocks, its parity test holding.

use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_core::broadcast::multi_broadcast;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::math::{Mul, Sub};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::binary::{rules, wire_cast, wire_rank_broadcast};

/// Teaches a tract ONNX parser to read `Mul` and `Sub` as [`BroadcastExpansion`]s.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("Mul", |_, _| Ok((expand(BroadcastExpansion(Arithmetic::Mul)), vec![])));
    onnx.op_register.insert("Sub", |_, _| Ok((expand(BroadcastExpansion(Arithmetic::Sub)), vec![])));
}

/// The two operations read this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arithmetic {
    Mul,
    Sub,
}

impl Arithmetic {
    /// tract's own operator for it.
    fn tract_op(self) -> Box<dyn BinMiniOp> {
        match self {
            Self::Mul => Box::new(Mul),
            Self::Sub => Box::new(Sub),
        }
    }

    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Self::Mul => a * b,
            Self::Sub => a - b,
        }
    }
}

/// The ONNX node, typed as tract types it (numpy broadcasting, inputs cast to one type), then wired as a
/// [`BroadcastArithmetic`] when both inputs are f32 tensors of known, different shapes, neither a single value;
/// as tract's own operator otherwise.
#[derive(Debug, Clone)]
struct BroadcastExpansion(Arithmetic);

impl Expansion for BroadcastExpansion {
    fn name(&self) -> StaticName {
        self.0.tract_op().name().into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let op = self.0.tract_op();
        rules(s, inputs, outputs, move |a, b| op.result_datum_type(a, b))
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let op = self.0.tract_op();
        let operating = op
            .operating_datum_type(model.outlet_fact(inputs[0])?.datum_type, model.outlet_fact(inputs[1])?.datum_type)?;
        let wires = wire_rank_broadcast(prefix, model, inputs)?;
        let wires = wire_cast(prefix, model, &wires, operating)?;
        let shapes =
            [model.outlet_fact(wires[0])?.shape.as_concrete(), model.outlet_fact(wires[1])?.shape.as_concrete()];
        let ours = match shapes {
            [Some(a), Some(b)] => {
                operating == f32::datum_type()
                    && a != b
                    && a.iter().product::<usize>() > 1
                    && b.iter().product::<usize>() > 1
            }
            _ => false,
        };
        if ours {
            model.wire_node(prefix, BroadcastArithmetic(self.0), &wires)
        } else {
            model.wire_node(prefix, TypedBinOp(op, None), &wires)
        }
    }
}

/// `a * b` or `a - b` on two f32 tensors of one rank whose shapes broadcast (each axis equal, or 1 on one side).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BroadcastArithmetic(pub Arithmetic);

impl BroadcastArithmetic {
    /// The output of `a` and `b`, of shapes `a_shape` and `b_shape` (one rank), broadcast to `out_shape`.
    fn apply(
        &self,
        (a, a_shape): (&[f32], &[usize]),
        (b, b_shape): (&[f32], &[usize]),
        out_shape: &[usize],
    ) -> Vec<f32> {
        let rank = out_shape.len();
        let strides = |shape: &[usize]| {
            let mut strides = vec![0; rank];
            let mut step = 1;
            for axis in (0..rank).rev() {
                strides[axis] = if shape[axis] == 1 { 0 } else { step };
                step *= shape[axis];
            }
            strides
        };
        let (a_strides, b_strides) = (strides(a_shape), strides(b_shape));
        let inner = out_shape.last().copied().unwrap_or(1);
        let (a_step, b_step) = (a_strides.last().copied().unwrap_or(0), b_strides.last().copied().unwrap_or(0));
        let mut out = Vec::with_capacity(out_shape.iter().product());
        // An odometer over every axis but the last, each input's offset following it.
        let mut index = vec![0; rank.saturating_sub(1)];
        let (mut a_at, mut b_at) = (0, 0);
        let rows = out_shape[..rank.saturating_sub(1)].iter().product::<usize>();
        for _ in 0..rows {
            let (a_row, b_row) = (&a[a_at..], &b[b_at..]);
            let op = self.0;
            match (a_step, b_step) {
                (1, 1) => out.extend(a_row[..inner].iter().zip(&b_row[..inner]).map(|(&x, &y)| op.apply(x, y))),
                (1, _) => out.extend(a_row[..inner].iter().map(|&x| op.apply(x, b_row[0]))),
                (_, 1) => out.extend(b_row[..inner].iter().map(|&y| op.apply(a_row[0], y))),
                _ => out.extend(std::iter::repeat_n(op.apply(a_row[0], b_row[0]), inner)),
            }
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                a_at += a_strides[axis];
                b_at += b_strides[axis];
                if index[axis] < out_shape[axis] {
                    break;
                }
                a_at -= a_strides[axis] * out_shape[axis];
                b_at -= b_strides[axis] * out_shape[axis];
                index[axis] = 0;
            }
        }
        out
    }
}

impl Op for BroadcastArithmetic {
    fn name(&self) -> StaticName {
        format!("Broadcast{:?}", self.0).into()
    }

    op_as_typed_op!();
}

impl EvalOp for BroadcastArithmetic {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [a, b] = &inputs[..] else { bail!("{}: {} inputs, expected 2", self.name(), inputs.len()) };
        ensure!(a.rank() == b.rank(), "{}: inputs of ranks {} and {}", self.name(), a.rank(), b.rank());
        let out_shape = multi_broadcast(&[a.shape(), b.shape()])?;
        let values = self.apply(
            (a.try_as_plain_ram()?.as_slice::<f32>()?, a.shape()),
            (b.try_as_plain_ram()?.as_slice::<f32>()?, b.shape()),
            &out_shape,
        );
        Ok(tvec!(ArrayD::from_shape_vec(IxDyn(&out_shape), values)?.into_tvalue()))
    }
}

impl TypedOp for BroadcastArithmetic {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = multi_broadcast(&[&*inputs[0].shape, &*inputs[1].shape])?;
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a op b` the plain way: every output index mapped back to each input (an axis of 1 repeats).
    fn by_hand(op: Arithmetic, a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let out_shape: Vec<usize> = a_shape.iter().zip(b_shape).map(|(&x, &y)| x.max(y)).collect();
        let flat = |shape: &[usize], index: &[usize]| {
            shape.iter().zip(index).fold(0, |at, (&side, &i)| at * side + if side == 1 { 0 } else { i })
        };
        let mut out = Vec::new();
        for n in 0..out_shape.iter().product::<usize>() {
            let mut index = vec![0; out_shape.len()];
            let mut rest = n;
            for axis in (0..out_shape.len()).rev() {
                index[axis] = rest % out_shape[axis];
                rest /= out_shape[axis];
            }
            out.push(op.apply(a[flat(a_shape, &index)], b[flat(b_shape, &index)]));
        }
        (out, out_shape)
    }

    #[test]
    fn broadcasting_gives_what_each_output_index_gives_by_hand() {
        // The layer norms' shapes, an outer product, repeats on both sides, and rank 1.
        let pairs: [(&[usize], &[usize]); 6] = [
            (&[1, 64, 1, 97], &[1, 1, 1, 97]),
            (&[1, 1, 97, 1], &[1, 1, 1, 64]),
            (&[2, 3, 4], &[1, 3, 1]),
            (&[2, 1, 4], &[1, 3, 1]),
            (&[3, 1], &[1, 5]),
            (&[1], &[7]),
        ];
        for op in [Arithmetic::Mul, Arithmetic::Sub] {
            for (a_shape, b_shape) in pairs {
                let values = |shape: &[usize], seed: usize| -> Vec<f32> {
                    (0..shape.iter().product::<usize>()).map(|i| ((i * 7919 + seed) % 103) as f32 / 7.0 - 5.0).collect()
                };
                let (a, b) = (values(a_shape, 1), values(b_shape, 2));
                let (want, out_shape) = by_hand(op, &a, a_shape, &b, b_shape);
                let got = BroadcastArithmetic(op).apply((&a, a_shape), (&b, b_shape), &out_shape);
                assert_eq!(got, want, "{op:?} {a_shape:?} {b_shape:?}");
                let swapped = BroadcastArithmetic(op).apply((&b, b_shape), (&a, a_shape), &out_shape);
                assert_eq!(swapped, by_hand(op, &b, b_shape, &a, a_shape).0, "{op:?} {b_shape:?} {a_shape:?}");
            }
        }
    }
}
