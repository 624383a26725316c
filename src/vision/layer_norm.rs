//! The blendshapes model's layer norms as one operator of ours. Each of its eight norms is a dozen ONNX nodes (a
//! mean and a variance over the channels, a square root, its reciprocal, two reshapes, a transpose, three products
//! and two sums), which tract runs as about ten small steps over the same 64 x 97 values. Before parsing, the
//! nodes of each norm are found by their connections and replaced by one node that normalises each pixel's
//! channels and writes the result channels last, as the transpose did:
//! `out[n, h, w, c] = x[n, c, h, w] * s + (-mean) * s`, with `s = gamma[c] / sqrt(variance + epsilon)`, the
//! model's own order of operations. A pattern that differs anywhere is left to tract.

use std::collections::HashMap;

use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::onnx::{rank4_unary_rules, unwritten_tensor};

/// The fused node's operator name: no ONNX operator's.
const FUSED: &str = "LivenessChannelLayerNorm";

/// Teaches a tract ONNX parser to read the fused nodes [`fuse_layer_norms`] writes.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(FUSED, |_, node| {
        let gamma: Vec<f32> = node.get_attr_vec("gamma")?;
        let epsilon: f32 = node.get_attr("epsilon")?;
        Ok((expand(ChannelLayerNorm { gamma, epsilon }), vec![]))
    });
}

/// The graph's nodes by the name of their first output, and how many nodes (or graph outputs) read each name.
struct Wiring<'g> {
    graph: &'g GraphProto,
    producers: HashMap<&'g str, usize>,
    readers: HashMap<&'g str, usize>,
}

impl<'g> Wiring<'g> {
    fn new(graph: &'g GraphProto) -> Self {
        let mut producers = HashMap::new();
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for (index, node) in graph.node.iter().enumerate() {
            if let Some(output) = node.output.first() {
                producers.insert(output.as_str(), index);
            }
            for input in &node.input {
                *readers.entry(input.as_str()).or_default() += 1;
            }
        }
        for output in &graph.output {
            *readers.entry(output.name.as_str()).or_default() += 1;
        }
        Self { graph, producers, readers }
    }

    /// The node that makes `name`, if it is of `op_type`.
    fn node(&self, name: &str, op_type: &str) -> Option<(usize, &'g NodeProto)> {
        let index = *self.producers.get(name)?;
        let node = &self.graph.node[index];
        (node.op_type == op_type).then_some((index, node))
    }

    /// The initializer `name`, decoded by tract-onnx as it decodes any tensor of the model.
    fn initializer(&self, name: &str) -> Option<Tensor> {
        let proto = self.graph.initializer.iter().find(|tensor| tensor.name == name)?;
        tract_onnx::tensor::load_tensor(&tract_onnx::data_resolver::FopenDataResolver, proto, None).ok()
    }

    /// The values of the float initializer `name`.
    fn floats(&self, name: &str) -> Option<Vec<f32>> {
        let tensor = self.initializer(name)?;
        let values = tensor.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?.to_vec();
        Some(values)
    }

    /// Whether `node` (a `Reshape`) moves a per-pixel value of rank 4 to the channels-last layout, (N, H, W, 1): its
    /// target shape an int64 initializer of four values ending in 1.
    fn reshapes_to_channels_last(&self, node: &NodeProto) -> bool {
        let Some(shape) = node.input.get(1).and_then(|name| self.initializer(name)) else { return false };
        let Ok(ram) = shape.try_as_plain_ram() else { return false };
        ram.as_slice::<i64>().is_ok_and(|shape| shape.len() == 4 && shape[3] == 1)
    }

    fn reads(&self, name: &str) -> usize {
        self.readers.get(name).copied().unwrap_or(0)
    }
}

/// The integers of `node`'s attribute `name`, if it has them.
fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.get_attr_opt_vec(name).ok().flatten()
}

/// Whether `node` is a mean over the channels (axis 1) that keeps its axis.
fn channel_mean(node: &NodeProto) -> bool {
    let keeps_axis = node.get_attr_opt::<i64>("keepdims").ok().flatten() == Some(1);
    ints(node, "axes") == Some(vec![1]) && keeps_axis && node.input.len() == 1
}

/// One norm found: the nodes it replaces, the node that ends it, and its input, gamma and epsilon.
struct Found {
    nodes: Vec<usize>,
    end: usize,
    input: String,
    gamma: Vec<f32>,
    epsilon: f32,
}

/// Which of `a` and `b` (two input names) is made by an `op_type` node, with the other.
fn split<'g>(wiring: &Wiring<'g>, [a, b]: [&'g str; 2], op_type: &str) -> Option<((usize, &'g NodeProto), &'g str)> {
    wiring.node(a, op_type).map(|n| (n, b)).or_else(|| wiring.node(b, op_type).map(|n| (n, a)))
}

fn pair(node: &NodeProto) -> Option<[&str; 2]> {
    match &node.input[..] {
        [a, b] => Some([a.as_str(), b.as_str()]),
        _ => None,
    }
}

/// The norm that ends in node `end` (an `Add`), if it is one.
fn find(wiring: &Wiring, end: usize) -> Option<Found> {
    let add = &wiring.graph.node[end];
    if add.op_type != "Add" {
        return None;
    }
    // add = transpose(x) * s + reshape(-mean(x)) * s
    let [first, second] = pair(add)?;
    let (a, b) = (wiring.node(first, "Mul")?, wiring.node(second, "Mul")?);
    let (a, b) = if split(wiring, pair(a.1)?, "Transpose").is_some() { (a, b) } else { (b, a) };
    let (transpose, scale) = split(wiring, pair(a.1)?, "Transpose")?;
    let (negated, other_scale) = split(wiring, pair(b.1)?, "Reshape")?;
    if scale != other_scale || ints(transpose.1, "perm") != Some(vec![0, 2, 3, 1]) {
        return None;
    }
    let x = transpose.1.input.first()?.as_str();
    let neg = wiring.node(negated.1.input.first()?, "Neg")?;
    let mean = wiring.node(neg.1.input.first()?, "ReduceMean")?;
    if !channel_mean(mean.1) || mean.1.input[0] != x {
        return None;
    }
    // s = reshape(1 / sqrt(mean((x - mean)^2) + epsilon)) * gamma
    let s = wiring.node(scale, "Mul")?;
    let (reshaped, gamma_name) = split(wiring, pair(s.1)?, "Reshape")?;
    let gamma = wiring.floats(gamma_name)?;
    let reciprocal = wiring.node(reshaped.1.input.first()?, "Reciprocal")?;
    let sqrt = wiring.node(reciprocal.1.input.first()?, "Sqrt")?;
    let plus = wiring.node(sqrt.1.input.first()?, "Add")?;
    let (variance, epsilon_name) = split(wiring, pair(plus.1)?, "ReduceMean")?;
    let [epsilon] = wiring.floats(epsilon_name)?[..] else { return None };
    let square = wiring.node(variance.1.input.first()?, "Mul")?;
    let [d, d_again] = pair(square.1)?;
    let difference = wiring.node(d, "Sub")?;
    let [minuend, subtrahend] = pair(difference.1)?;
    if !channel_mean(variance.1) || d != d_again || minuend != x {
        return None;
    }
    if !wiring.reshapes_to_channels_last(negated.1) || !wiring.reshapes_to_channels_last(reshaped.1) {
        return None;
    }
    let mut nodes = vec![a.0, b.0, transpose.0, negated.0, neg.0, mean.0, s.0, reshaped.0, reciprocal.0, sqrt.0];
    nodes.extend([plus.0, variance.0, square.0, difference.0]);
    if subtrahend != mean.1.output[0] {
        // The mean reshaped to the shape it already has.
        let same = wiring.node(subtrahend, "Reshape")?;
        if same.1.input.first()? != &mean.1.output[0] {
            return None;
        }
        nodes.push(same.0);
    }
    // Nothing outside the norm may read what it computes on the way: every read of those values is the norm's own.
    let made_inside = |name: &String| wiring.producers.get(name.as_str()).is_some_and(|p| nodes.contains(p));
    let reads_inside: usize =
        nodes.iter().chain([&end]).map(|&i| wiring.graph.node[i].input.iter().filter(|n| made_inside(n)).count()).sum();
    let reads: usize = nodes.iter().map(|&i| wiring.reads(&wiring.graph.node[i].output[0])).sum();
    if reads_inside != reads {
        return None;
    }
    Some(Found { nodes, end, input: x.to_owned(), gamma, epsilon })
}

/// Replaces each layer norm over the channels in `proto` by one node of ours; returns how many it replaced.
pub fn fuse_layer_norms(proto: &mut ModelProto) -> usize {
    let Some(graph) = proto.graph.as_mut() else { return 0 };
    let found: Vec<Found> = {
        let wiring = Wiring::new(graph);
        (0..graph.node.len()).filter_map(|end| find(&wiring, end)).collect()
    };
    for norm in &found {
        let end = &mut graph.node[norm.end];
        end.op_type = FUSED.to_owned();
        end.domain.clear();
        end.input = vec![norm.input.clone()];
        end.attribute = vec![
            AttributeProto {
                name: "gamma".into(),
                r#type: AttributeType::Floats as i32,
                floats: norm.gamma.clone(),
                ..Default::default()
            },
            AttributeProto {
                name: "epsilon".into(),
                r#type: AttributeType::Float as i32,
                f: norm.epsilon,
                ..Default::default()
            },
        ];
    }
    let dropped: std::collections::HashSet<usize> = found.iter().flat_map(|norm| norm.nodes.iter().copied()).collect();
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !dropped.contains(&(index - 1))
    });
    found.len()
}

/// The layer norm read by the parser: typed as its input's type, channels moved last.
#[derive(Debug, Clone)]
struct ChannelLayerNorm {
    gamma: Vec<f32>,
    epsilon: f32,
}

impl Expansion for ChannelLayerNorm {
    fn name(&self) -> StaticName {
        "ChannelLayerNorm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        rank4_unary_rules(s, inputs, outputs)?;
        for (from, to) in [(0, 0), (2, 1), (3, 2), (1, 3)] {
            s.equals(&inputs[0].shape[from], &outputs[0].shape[to])?;
        }
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let op = ChannelLayerNormOp { gamma: Arc::new(self.gamma.clone()), epsilon: self.epsilon };
        model.wire_node(prefix, op, inputs)
    }
}

/// Normalises each pixel's channels of an (N, C, H, W) f32 tensor and writes them (N, H, W, C).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLayerNormOp {
    gamma: Arc<Vec<f32>>,
    epsilon: f32,
}

impl std::hash::Hash for ChannelLayerNormOp {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.gamma.iter().for_each(|g| g.to_bits().hash(state));
        self.epsilon.to_bits().hash(state);
    }
}

impl Eq for ChannelLayerNormOp {}

impl ChannelLayerNormOp {
    /// `out` (N, H, W, C) from `x` (N, C, H, W), `channels` = C, `pixels` = H * W. The sums run channel by channel
    /// over whole rows of pixels, so their loops read memory in order.
    fn apply(&self, x: &[f32], channels: usize, pixels: usize, out: &mut [f32]) {
        let per_channel = 1.0 / channels as f32;
        let (mut means, mut reciprocals) = (vec![0.0f32; pixels], vec![0.0f32; pixels]);
        for (image, out_image) in x.chunks_exact(channels * pixels).zip(out.chunks_exact_mut(channels * pixels)) {
            means.fill(0.0);
            for row in image.chunks_exact(pixels) {
                means.iter_mut().zip(row).for_each(|(sum, &value)| *sum += value);
            }
            means.iter_mut().for_each(|mean| *mean *= per_channel);
            reciprocals.fill(0.0);
            for row in image.chunks_exact(pixels) {
                for ((sum, &value), &mean) in reciprocals.iter_mut().zip(row).zip(&means) {
                    *sum += (value - mean) * (value - mean);
                }
            }
            reciprocals.iter_mut().for_each(|sum| *sum = 1.0 / (*sum * per_channel + self.epsilon).sqrt());
            for (channel, (row, &gamma)) in image.chunks_exact(pixels).zip(self.gamma.iter()).enumerate() {
                for (pixel, (&value, (&mean, &reciprocal))) in
                    row.iter().zip(means.iter().zip(&reciprocals)).enumerate()
                {
                    let scale = reciprocal * gamma;
                    out_image[pixel * channels + channel] = value * scale + -mean * scale;
                }
            }
        }
    }
}

impl Op for ChannelLayerNormOp {
    fn name(&self) -> StaticName {
        "ChannelLayerNorm".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelLayerNormOp {
    op_out_of_plan!();

    fn eval(&self, _context: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [input] = &inputs[..] else { bail!("ChannelLayerNorm: {} inputs, expected 1", inputs.len()) };
        let &[batch, channels, height, width] = input.shape() else {
            bail!("ChannelLayerNorm: an input of shape {:?}, expected rank 4", input.shape())
        };
        ensure!(channels == self.gamma.len(), "ChannelLayerNorm: {channels} channels, {} gammas", self.gamma.len());
        // SAFETY: `apply` writes every value of the output.
        let mut output = unsafe { unwritten_tensor(&[batch, height, width, channels])? };
        let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
        self.apply(x, channels, height * width, output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for ChannelLayerNormOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4, "ChannelLayerNorm: an input of rank {}", shape.rank());
        Ok(tvec!(f32::fact([shape[0].clone(), shape[2].clone(), shape[3].clone(), shape[1].clone()])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The norm the plain way, pixel by pixel, the same sums in the same order.
    fn by_hand(x: &[f32], gamma: &[f32], epsilon: f32, [batch, channels, height, width]: [usize; 4]) -> Vec<f32> {
        let pixels = height * width;
        let mut out = vec![0.0; x.len()];
        for n in 0..batch {
            for p in 0..pixels {
                let value = |c: usize| x[(n * channels + c) * pixels + p];
                let mut sum = 0.0f32;
                (0..channels).for_each(|c| sum += value(c));
                let mean = sum * (1.0 / channels as f32);
                let mut squares = 0.0f32;
                (0..channels).for_each(|c| squares += (value(c) - mean) * (value(c) - mean));
                let reciprocal = 1.0 / (squares * (1.0 / channels as f32) + epsilon).sqrt();
                for c in 0..channels {
                    let scale = reciprocal * gamma[c];
                    out[(n * pixels + p) * channels + c] = value(c) * scale + -mean * scale;
                }
            }
        }
        out
    }

    #[test]
    fn normalises_each_pixels_channels_and_writes_them_last() {
        for shape in [[1, 64, 1, 97], [2, 3, 4, 5], [1, 1, 2, 2]] {
            let x: Vec<f32> = (0..shape.iter().product()).map(|i| ((i * 7919) % 211) as f32 / 13.0 - 8.0).collect();
            let gamma: Vec<f32> = (0..shape[1]).map(|c| 0.5 + c as f32 / 17.0).collect();
            let op = ChannelLayerNormOp { gamma: Arc::new(gamma.clone()), epsilon: 1e-6 };
            let mut out = vec![f32::NAN; x.len()];
            op.apply(&x, shape[1], shape[2] * shape[3], &mut out);
            assert_eq!(out, by_hand(&x, &gamma, 1e-6, shape), "{shape:?}");
        }
    }

    #[test]
    fn the_blendshapes_models_eight_norms_are_fused_and_nothing_else() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/face_blendshapes.onnx");
        let proto = super::super::onnx::parse(&path, &super::super::onnx::read(&path).unwrap()).unwrap();
        let mut fused = proto.clone();
        assert_eq!(fuse_layer_norms(&mut fused), 8);
        let op_types = |proto: &ModelProto| -> Vec<String> {
            proto.graph.as_ref().unwrap().node.iter().map(|node| node.op_type.clone()).collect()
        };
        let (before, after) = (op_types(&proto), op_types(&fused));
        let count = |types: &[String], op: &str| types.iter().filter(|t| *t == op).count();
        assert_eq!(count(&after, FUSED), 8);
        // Each norm had two channel means, a square root and a reciprocal; the model's input normalisation (its
        // first nodes) keeps its own means and square root.
        assert_eq!(count(&before, "ReduceMean") - count(&after, "ReduceMean"), 16);
        assert_eq!(count(&after, "Reciprocal"), 0);
        assert_eq!(count(&before, "Conv"), count(&after, "Conv"));
        // A second pass finds nothing left to fuse.
        assert_eq!(fuse_layer_norms(&mut fused), 0);
    }
}
