//! One ONNX model, parsed, given a fixed input shape and optimised once by tract, then run many times.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{
    check_input_arity, check_output_arity, InferenceOp, InferenceResult, Solver, TensorProxy,
};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file is not there.
    #[error("model file {0} is missing")]
    Missing(PathBuf),
    /// The file exists but its content is not the pinned one.
    #[error("model file {path} has sha256 {actual}, expected {expected}")]
    Checksum { path: PathBuf, expected: String, actual: String },
    /// tract could not parse, type or optimise the model.
    #[error("cannot load model {path}: {message}")]
    Load { path: PathBuf, message: String },
    /// tract failed while running the model.
    #[error("inference failed in {model}: {message}")]
    Inference { model: String, message: String },
}

/// tract's ONNX parser, with PRelu ([`super::prelu`]), the models' max pooling ([`super::max_pool`]), depthwise
/// and pointwise convolutions ([`super::conv`]) and products and differences of differently shaped inputs
/// ([`super::broadcast`]) and layer norms ([`super::layer_norm`]) as operators of ours.
fn parser() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    super::prelu::register(&mut onnx);
    super::conv::register(&mut onnx);
    super::max_pool::register(&mut onnx);
    super::broadcast::register(&mut onnx);
    super::layer_norm::register(&mut onnx);
    onnx
}

/// How tract-onnx builds an operator from an ONNX node.
type OpBuilder = fn(
    &tract_onnx::model::ParsingContext,
    &tract_onnx::pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own builder of one ONNX operator, kept by a module that reads some of that operator's nodes itself and
/// hands the rest back to tract.
pub(super) struct TractBuilder {
    op: &'static str,
    builder: OnceLock<OpBuilder>,
}

impl TractBuilder {
    /// Nothing kept yet for `op`.
    pub(super) const fn new(op: &'static str) -> Self {
        Self { op, builder: OnceLock::new() }
    }

    /// Keeps tract's builder for the operator from `onnx`, before the caller registers its own.
    pub(super) fn keep(&self, onnx: &tract_onnx::Onnx) {
        if let Some(&builder) = onnx.op_register.0.get(self.op) {
            self.builder.get_or_init(|| builder);
        }
    }

    /// Builds `node` as tract would.
    pub(super) fn build(
        &self,
        context: &tract_onnx::model::ParsingContext,
        node: &tract_onnx::pb::NodeProto,
    ) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
        let Some(builder) = self.builder.get() else {
            return Err(TractError::msg(format!("tract's {} builder was not kept", self.op)));
        };
        builder(context, node)
    }
}

/// The inference rules of an operator of ours with one rank-4 input and one rank-4 output of the input's type; the
/// caller adds how their shapes relate.
pub(super) fn rank4_unary_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
    s.equals(&inputs[0].rank, 4)?;
    s.equals(&outputs[0].rank, 4)?;
    Ok(())
}

/// Swaps each node of `model` whose operator is a `T` for the operator `ours` makes of it (given the datum type of
/// the node's first input), where it makes one: tract's optimised model keeps its own operator elsewhere.
pub(super) fn replace_ops<T: Op, O: TypedOp>(
    model: &mut TypedModel,
    ours: impl Fn(&T, DatumType) -> Option<O>,
) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let Some(op) = model.node(id).op_as::<T>() else { continue };
        let datum_type = model.outlet_fact(model.node(id).inputs[0])?.datum_type;
        if let Some(replacement) = ours(op, datum_type) {
            model.node_mut(id).op = Box::new(replacement);
        }
    }
    Ok(())
}

/// Where our operators' outputs start: on a 64-byte cache line, not on tract's 32 bytes (an AVX register). A 1x1
/// convolution reads a tile of 16 values from every input plane; planes a multiple of 4 KiB long that start half a
/// line off split each tile over two lines of one cache set, read again by the next tile after the other planes'
/// lines have evicted them. A 16->8 convolution over 128x128 planes took 1.3-1.7 times as long that way (timed
/// alone, 2026-12-02); FaceMesh 0.95-0.97 of the time with every output on a line (each way loaded in one process,
/// paired run by run, 200 pairs, twice).
pub(super) const CACHE_LINE: usize = 64;

/// A float tensor of `shape` whose values are left as the allocator gave them: an operator of ours that writes
/// every value of its output takes one, where zeroing it first was another pass over memory (memset was 7 % of the
/// server's time, `perf` on the ratio command, 2026-12-01). It starts on a cache line ([`CACHE_LINE`]).
///
/// # Safety
/// The caller writes every value before the tensor is read or returned.
pub(super) unsafe fn unwritten_tensor(shape: &[usize]) -> TractResult<Tensor> {
    // SAFETY: passed on to the caller, as documented above.
    let mut tensor = unsafe { Tensor::uninitialized_aligned::<f32>(shape, CACHE_LINE)? };
    // Tests (debug builds) see NaN wherever an operator fails to write a value, not what the memory held before.
    if cfg!(debug_assertions) {
        tensor.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?.fill(f32::NAN);
    }
    Ok(tensor)
}

/// Evaluates an operator of ours that maps each (height, width) plane of an (N, C, H, W) float input to a plane of
/// the size `output_side` gives: `apply(input, [height, width], [out_height, out_width], output)` must write every
/// value of the output, which is not zeroed first. An empty input or output plane gives the (empty or zero) output
/// without calling `apply`.
pub(super) fn eval_planes(
    inputs: TVec<TValue>,
    output_side: impl Fn(usize, usize) -> Option<[usize; 2]>,
    apply: impl FnOnce(&[f32], [usize; 2], [usize; 2], &mut [f32]) -> TractResult<()>,
) -> TractResult<TVec<TValue>> {
    let [input] = &inputs[..] else {
        return Err(TractError::msg(format!("{} inputs where one was expected", inputs.len())));
    };
    let &[batch, channels, height, width] = input.shape() else {
        return Err(TractError::msg(format!("an input of shape {:?}, expected rank 4", input.shape())));
    };
    let Some([out_height, out_width]) = output_side(height, width) else {
        return Err(TractError::msg(format!("no output for an input of {height} x {width}")));
    };
    let shape = [batch, channels, out_height, out_width];
    if height * width == 0 || out_height * out_width == 0 {
        return Ok(tvec!(Tensor::zero::<f32>(&shape)?.into_tvalue()));
    }
    // SAFETY: `apply` writes every output value, as this function's contract asks.
    let mut output = unsafe { unwritten_tensor(&shape)? };
    let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
    let mut planes = output.try_as_plain_ram_mut()?;
    apply(values, [height, width], [out_height, out_width], planes.as_slice_mut::<f32>()?)?;
    Ok(tvec!(output.into_tvalue()))
}

/// Removes the graph's first step when it is a transpose of its input from NHWC to NCHW read by nothing else, and
/// hands what read the transpose's output the input itself.
fn skip_input_transpose(proto: &mut tract_onnx::pb::ModelProto) -> Result<(), String> {
    let graph = proto.graph.as_mut().ok_or("the model has no graph")?;
    let input = graph.input.first().ok_or("the model has no input")?.name.clone();
    let readers: Vec<usize> = (0..graph.node.len()).filter(|&i| graph.node[i].input.contains(&input)).collect();
    let channels_first = |node: &tract_onnx::pb::NodeProto| {
        node.op_type == "Transpose" && node.get_attr_opt_vec::<i64>("perm").ok().flatten() == Some(vec![0, 3, 1, 2])
    };
    let [transpose] = readers[..] else { return Err(format!("{} nodes read the input, not one", readers.len())) };
    if !channels_first(&graph.node[transpose]) {
        return Err("the input is not first transposed from NHWC to NCHW".into());
    }
    let moved = graph.node.remove(transpose).output.into_iter().next().ok_or("the transpose has no output")?;
    if graph.output.iter().any(|output| output.name == moved) {
        return Err("the transposed input is an output of the model".into());
    }
    for name in graph.node.iter_mut().flat_map(|node| node.input.iter_mut()).filter(|name| **name == moved) {
        *name = input.clone();
    }
    Ok(())
}

/// The bytes of the model file at `path`.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|_| ModelError::Missing(path.to_owned()))
}

/// The protobuf in `bytes`, read from `path` (which names the model in errors).
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<tract_onnx::pb::ModelProto, ModelError> {
    parser()
        .proto_model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| ModelError::Load { path: path.to_owned(), message: format!("{e:#}") })
}

/// A loaded model with one float input of a fixed shape. Cheap to share: `run` takes `&self`.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    name: String,
    input_shape: Vec<usize>,
    plan: Arc<TypedRunnableModel>,
    /// Run states between runs, kept so each run reuses one's scratch memory instead of building a new one: as
    /// many as runs were ever in flight at once (one per core the service analyses on).
    idle_states: Arc<Mutex<Vec<TypedSimpleState>>>,
}

impl OnnxModel {
    /// Reads, types and optimises the model at `path` for an `input_shape` float32 input.
    pub fn load(path: &Path, input_shape: &[usize]) -> Result<Self, ModelError> {
        Self::from_bytes(path, &read(path)?, input_shape)
    }

    /// As [`OnnxModel::load`], from bytes already read (and checked) by the caller.
    pub fn from_bytes(path: &Path, bytes: &[u8], input_shape: &[usize]) -> Result<Self, ModelError> {
        Self::from_proto(path, parse(path, bytes)?, input_shape)
    }

    /// As [`OnnxModel::load`] for a model that reads an NHWC image (`[n, h, w, c]`) and moves its channels first
    /// as its first step: loaded without that transpose, so it reads the `[n, c, h, w]` planes its caller writes
    /// (each run then skips a pass over the input). An error if the model does not start so.
    pub fn load_planar(path: &Path, nhwc: [usize; 4]) -> Result<Self, ModelError> {
        Self::from_proto_planar(path, parse(path, &read(path)?)?, nhwc)
    }

    /// As [`OnnxModel::load_planar`], from the parsed protobuf.
    fn from_proto_planar(
        path: &Path,
        mut proto: tract_onnx::pb::ModelProto,
        [n, h, w, c]: [usize; 4],
    ) -> Result<Self, ModelError> {
        skip_input_transpose(&mut proto).map_err(|message| ModelError::Load { path: path.to_owned(), message })?;
        Self::from_proto(path, proto, &[n, c, h, w])
    }

    /// As [`OnnxModel::load`], from the parsed protobuf; `path` names the model in errors.
    fn from_proto(
        path: &Path,
        mut proto: tract_onnx::pb::ModelProto,
        input_shape: &[usize],
    ) -> Result<Self, ModelError> {
        super::layer_norm::fuse_layer_norms(&mut proto);
        let load_error = |e: TractError| ModelError::Load { path: path.to_owned(), message: format!("{e:#}") };
        let plan = parser()
            .model_for_proto_model(&proto)
            .and_then(|model| model.with_input_fact(0, f32::fact(input_shape).into()))
            .and_then(|model| model.into_optimized())
            .and_then(|mut model| {
                super::pad::replace_pads(&mut model)?;
                super::reduce::replace_reductions(&mut model)?;
                super::axes::replace_axis_moves(&mut model)?;
                super::separable::fuse_separable_convs(&mut model)?;
                Ok(model)
            })
            .and_then(|model| model.into_runnable())
            .map_err(load_error)?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Self { name, input_shape: input_shape.to_vec(), plan, idle_states: Arc::default() })
    }

    /// Runs the model on `input` (row-major, exactly the input shape's length) and returns every output
    /// flattened, in the model's output order.
    pub fn run(&self, input: Vec<f32>) -> Result<Vec<Vec<f32>>, ModelError> {
        let fail = |e: TractError| ModelError::Inference { model: self.name.clone(), message: format!("{e:#}") };
        // tract copies the input into its own aligned memory here (`Tensor::from_datum`): FaceMesh's 786 KB a frame.
        let tensor = tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&self.input_shape), input)
            .map_err(|e| fail(e.into()))?
            .into_tensor();
        let idle = self.idle_states.lock().ok().and_then(|mut states| states.pop());
        let mut state = match idle {
            Some(state) => state,
            None => self.plan.spawn().map_err(fail)?,
        };
        let outputs = state.run(tvec!(tensor.into())).map_err(fail)?;
        let flat = outputs
            .iter()
            .map(|output| Ok(output.to_plain_array_view::<f32>().map_err(fail)?.iter().copied().collect()))
            .collect();
        // A state whose run failed is dropped above, never reused.
        if let Ok(mut states) = self.idle_states.lock() {
            states.push(state);
        }
        flat
    }

    /// tract's optimised plan, for tools that look inside it (`examples/profile_models.rs`).
    pub fn plan(&self) -> &Arc<TypedRunnableModel> {
        &self.plan
    }

    /// The file name the model was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{attribute_proto, type_proto, AttributeProto, TensorProto, TypeProto, ValueInfoProto};
    use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

    /// A one-node model `y = node(x, ...)`, any further inputs given as `initializer`.
    fn one_node_model(node: NodeProto, initializer: Vec<TensorProto>) -> ModelProto {
        let float = TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: None,
            })),
            ..TypeProto::default()
        };
        let value = |name: &str| ValueInfoProto {
            name: name.to_owned(),
            r#type: Some(float.clone()),
            ..ValueInfoProto::default()
        };
        let graph = GraphProto {
            node: vec![NodeProto { name: "node".to_owned(), output: vec!["y".to_owned()], ..node }],
            initializer,
            input: vec![value("x")],
            output: vec![value("y")],
            ..GraphProto::default()
        };
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(graph),
            ..ModelProto::default()
        }
    }

    /// An ONNX attribute holding a list of integers.
    fn ints_attribute(name: &str, values: Vec<i64>) -> AttributeProto {
        AttributeProto {
            name: name.to_owned(),
            r#type: attribute_proto::AttributeType::Ints as i32,
            ints: values,
            ..AttributeProto::default()
        }
    }

    /// A float initializer named `name`.
    fn float_tensor(name: &str, dims: Vec<i64>, values: Vec<f32>) -> TensorProto {
        TensorProto {
            name: name.to_owned(),
            dims,
            data_type: DataType::Float as i32,
            float_data: values,
            ..TensorProto::default()
        }
    }

    /// `y = PRelu(x, slopes)`, the slopes of shape `slope_dims`.
    fn prelu_model(slopes: &[f32], slope_dims: &[i64]) -> ModelProto {
        let node = NodeProto {
            op_type: "PRelu".to_owned(),
            input: vec!["x".to_owned(), "slope".to_owned()],
            ..NodeProto::default()
        };
        one_node_model(node, vec![float_tensor("slope", slope_dims.to_vec(), slopes.to_vec())])
    }

    /// `y = MaxPool(x)` over square windows of `side`, moved `stride` at a time, unpadded.
    fn max_pool_model(side: i64, stride: i64) -> ModelProto {
        let node = NodeProto {
            op_type: "MaxPool".to_owned(),
            input: vec!["x".to_owned()],
            attribute: vec![ints_attribute("kernel_shape", vec![side; 2]), ints_attribute("strides", vec![stride; 2])],
            ..NodeProto::default()
        };
        one_node_model(node, vec![])
    }

    /// Max pooling computed the plain way: every window of `side` at every `stride`, planes of `h` x `w`.
    fn max_pool_by_hand(x: &[f32], planes: usize, h: usize, w: usize, side: usize, stride: usize) -> Vec<f32> {
        let (out_h, out_w) = ((h - side) / stride + 1, (w - side) / stride + 1);
        let mut y = Vec::new();
        for plane in x.chunks_exact(h * w).take(planes) {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let window = (0..side).flat_map(|dy| (0..side).map(move |dx| (oy * stride + dy, ox * stride + dx)));
                    y.push(window.map(|(y, x)| plane[y * w + x]).fold(f32::NEG_INFINITY, f32::max));
                }
            }
        }
        y
    }

    /// `y = Conv(x, w, b)` over `channels` groups with `kernel` x `kernel` taps, `stride`, `pads` (top, left,
    /// bottom, right); weights and bias made up from their index.
    fn conv_model(channels: usize, groups: usize, kernel: usize, stride: i64, pads: [i64; 4]) -> ModelProto {
        let group = AttributeProto {
            name: "group".to_owned(),
            r#type: attribute_proto::AttributeType::Int as i32,
            i: groups as i64,
            ..AttributeProto::default()
        };
        let node = NodeProto {
            op_type: "Conv".to_owned(),
            input: vec!["x".to_owned(), "w".to_owned(), "b".to_owned()],
            attribute: vec![
                ints_attribute("kernel_shape", vec![kernel as i64; 2]),
                ints_attribute("strides", vec![stride; 2]),
                ints_attribute("pads", pads.to_vec()),
                group,
            ],
            ..NodeProto::default()
        };
        let per_group = channels / groups;
        let weights = channels * per_group * kernel * kernel;
        let (k, c, g) = (kernel as i64, channels as i64, per_group as i64);
        let w =
            float_tensor("w", vec![c, g, k, k], (0..weights).map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0).collect());
        let b = float_tensor("b", vec![c], (0..channels).map(|i| i as f32 * 0.25 - 0.5).collect());
        one_node_model(node, vec![w, b])
    }

    /// A depthwise convolution computed the plain way (same weights and bias as [`conv_model`]).
    fn depthwise_by_hand(
        x: &[f32],
        channels: usize,
        h: usize,
        w: usize,
        k: usize,
        s: usize,
        pads: [usize; 4],
    ) -> Vec<f32> {
        let [top, left, bottom, right] = pads;
        let (out_h, out_w) = ((h + top + bottom - k) / s + 1, (w + left + right - k) / s + 1);
        let mut y = Vec::new();
        for c in 0..channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let mut sum = c as f32 * 0.25 - 0.5;
                    for dy in 0..k {
                        for dx in 0..k {
                            let (iy, ix) = ((oy * s + dy) as i64 - top as i64, (ox * s + dx) as i64 - left as i64);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let weight = (((c * k * k + dy * k + dx) * 37) % 23) as f32 / 11.0 - 1.0;
                                sum += weight * x[(c * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                    y.push(sum);
                }
            }
        }
        y
    }

    #[test]
    fn the_depthwise_convolution_gives_depthwise_convolution() {
        // The models' shapes: 3x3 with stride 1 or 2 and even or uneven padding, on planes narrow and wide, 5x5
        // over the whole input and with a stride; and a stride of 3, which no model has.
        let cases = [
            (3, 1, [1, 1, 1, 1], 8, 8),
            (3, 1, [1, 1, 1, 1], 5, 2),
            (3, 1, [1, 1, 1, 1], 4, 35),
            (3, 2, [1, 1, 1, 1], 6, 40),
            (5, 2, [1, 1, 2, 2], 9, 11),
            (3, 2, [0, 0, 1, 1], 8, 8),
            (3, 2, [1, 1, 1, 1], 7, 9),
            (5, 1, [0; 4], 5, 5),
            (3, 3, [1, 2, 1, 0], 8, 10),
        ];
        for (kernel, stride, pads, h, w) in cases {
            let channels = 4;
            let proto = conv_model(channels, channels, kernel, stride, pads.map(|p| p as i64));
            let model = OnnxModel::from_proto(Path::new("dw.onnx"), proto, &[1, channels, h, w]).unwrap();
            assert!(format!("{:?}", model.plan().model()).contains("DepthwiseConv"), "our operator runs it");
            let x: Vec<f32> = (0..channels * h * w).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
            let y = model.run(x.clone()).unwrap().remove(0);
            let want = depthwise_by_hand(&x, channels, h, w, kernel, stride as usize, pads);
            assert_eq!(y.len(), want.len(), "{kernel}x{kernel} stride {stride} pads {pads:?}");
            for (got, want) in y.iter().zip(&want) {
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{got} vs {want}");
            }
        }
    }

    #[test]
    fn a_pointwise_convolution_is_ours_and_gives_the_convolution() {
        let (channels, h, w) = (6, 5, 7);
        let proto = conv_model(channels, 1, 1, 1, [0; 4]);
        let model = OnnxModel::from_proto(Path::new("pw.onnx"), proto, &[2, channels, h, w]).unwrap();
        assert!(format!("{:?}", model.plan().model()).contains("PointwiseConv"), "our operator runs it");
        let x: Vec<f32> = (0..2 * channels * h * w).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
        let y = model.run(x.clone()).unwrap().remove(0);
        let weight = |o: usize, i: usize| (((o * channels + i) * 37) % 23) as f32 / 11.0 - 1.0;
        let pixels = h * w;
        let want: Vec<f32> = (0..2 * channels * pixels)
            .map(|at| {
                let (image, o, p) = (at / (channels * pixels), at / pixels % channels, at % pixels);
                let input = |i: usize| x[(image * channels + i) * pixels + p];
                o as f32 * 0.25 - 0.5 + (0..channels).map(|i| weight(o, i) * input(i)).sum::<f32>()
            })
            .collect();
        for (got, want) in y.iter().zip(&want) {
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{got} vs {want}");
        }
        // Strided or padded 1x1 convolutions over more planes than an image's are tract's.
        let strided = OnnxModel::from_proto(Path::new("s.onnx"), conv_model(8, 1, 1, 2, [0; 4]), &[1, 8, 6, 6]);
        assert!(!format!("{:?}", strided.unwrap().plan().model()).contains("PointwiseConv"));
    }

    #[test]
    fn a_convolution_over_an_image_is_ours_as_patches() {
        let (channels, h, w, k, s) = (3, 9, 20, 3, 2);
        let model =
            OnnxModel::from_proto(Path::new("p.onnx"), conv_model(channels, 1, k, 2, [0, 0, 1, 1]), &[1, 3, h, w]);
        let model = model.unwrap();
        assert_eq!(operators_run(&model), ["Source", "PatchConv"]);
        let x: Vec<f32> = (0..channels * h * w).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
        let y = model.run(x.clone()).unwrap().remove(0);
        let (out_h, out_w) = ((h + 1 - k) / s + 1, (w + 1 - k) / s + 1);
        let weight = |o: usize, i: usize, dy: usize, dx: usize| {
            ((((o * channels + i) * k + dy) * k + dx) * 37 % 23) as f32 / 11.0 - 1.0
        };
        let mut want = Vec::new();
        for o in 0..channels {
            for (oy, ox) in (0..out_h).flat_map(|oy| (0..out_w).map(move |ox| (oy, ox))) {
                let mut sum = o as f32 * 0.25 - 0.5;
                for (i, dy, dx) in (0..channels * k * k).map(|t| (t / (k * k), t / k % k, t % k)) {
                    let (iy, ix) = (oy * s + dy, ox * s + dx);
                    if iy < h && ix < w {
                        sum += weight(o, i, dy, dx) * x[(i * h + iy) * w + ix];
                    }
                }
                want.push(sum);
            }
        }
        assert_eq!(y.len(), want.len());
        for (got, want) in y.iter().zip(&want) {
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{got} vs {want}");
        }
    }

    /// The names of the operators `model`'s plan runs, in order, constants left out.
    fn operators_run(model: &OnnxModel) -> Vec<String> {
        let plan = model.plan();
        plan.order_without_consts().iter().map(|&n| plan.model().node(n).op().name().to_string()).collect()
    }

    /// `y = PRelu(Conv1x1(x) [+ x])` over `channels` (weights and bias as [`conv_model`]), the convolution's
    /// output also a model output when `conv_out`.
    fn pointwise_prelu_model(channels: usize, slopes: &[f32], residual: bool, conv_out: bool) -> ModelProto {
        let mut proto = conv_model(channels, 1, 1, 1, [0; 4]);
        let graph = proto.graph.as_mut().unwrap();
        graph.node[0].output = vec!["c".to_owned()];
        if residual {
            graph.node.push(graph_node("Add", &["c", "x"], "s"));
        }
        graph.node.push(graph_node("PRelu", &[if residual { "s" } else { "c" }, "slope"], "y"));
        graph.initializer.push(float_tensor("slope", vec![slopes.len() as i64, 1, 1], slopes.to_vec()));
        if conv_out {
            also_output(graph, "c");
        }
        proto
    }

    /// A node of `op` reading `inputs`, writing `output` (and named after it).
    fn graph_node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            name: output.to_owned(),
            op_type: op.to_owned(),
            input: inputs.iter().map(|&input| input.to_owned()).collect(),
            output: vec![output.to_owned()],
            ..NodeProto::default()
        }
    }

    /// Makes the value `name` an output of `graph` too, typed as its first output.
    fn also_output(graph: &mut GraphProto, name: &str) {
        let output = ValueInfoProto { name: name.to_owned(), ..graph.output[0].clone() };
        graph.output.push(output);
    }

    #[test]
    fn a_prelu_and_a_residual_addition_after_a_pointwise_convolution_are_done_inside_it() {
        let (channels, h, w) = (5, 4, 9);
        let pixels = h * w;
        let slopes = [0.5, -2.0, 3.0, 0.25, 19.8125];
        let x: Vec<f32> = (0..channels * pixels).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
        let weight = |o: usize, i: usize| (((o * channels + i) * 37) % 23) as f32 / 11.0 - 1.0;
        let conv: Vec<f32> = (0..channels * pixels)
            .map(|at| {
                let (o, p) = (at / pixels, at % pixels);
                o as f32 * 0.25 - 0.5 + (0..channels).map(|i| weight(o, i) * x[i * pixels + p]).sum::<f32>()
            })
            .collect();
        for (residual, conv_out) in [(false, false), (true, false), (true, true)] {
            let proto = pointwise_prelu_model(channels, &slopes, residual, conv_out);
            let model = OnnxModel::from_proto(Path::new("pwp.onnx"), proto, &[1, channels, h, w]).unwrap();
            let ran = operators_run(&model);
            let case = format!("residual {residual}, convolution read elsewhere {conv_out}: {ran:?}");
            // Read elsewhere too, the convolution also runs on its own for that reader; the result is the same.
            let alone = |op: &String| op.contains("Prelu") || op.contains("Add");
            assert!(conv_out || !ran.iter().any(alone), "neither PRelu nor addition on its own: {case}");
            let outputs = model.run(x.clone()).unwrap();
            for (at, &got) in outputs[0].iter().enumerate() {
                let sum = conv[at] + if residual { x[at] } else { 0.0 };
                let want = if sum < 0.0 { sum * slopes[at / pixels] } else { sum };
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{case}: {got} vs {want}");
            }
            if conv_out {
                assert!(outputs[1]
                    .iter()
                    .zip(&conv)
                    .all(|(got, want)| (got - want).abs() <= 1e-4 * want.abs().max(1.0)));
            }
        }
    }

    /// `y = PRelu(Conv1x1(DepthwiseConv3x3(x)) + x)` over `channels` (the depthwise convolution padded by one,
    /// weights and bias as [`conv_model`]; the 1x1 one's weights `w1`, bias `b1` made up likewise), the depthwise
    /// convolution's output also a model output when `depthwise_out`.
    fn separable_model(channels: usize, slopes: &[f32], depthwise_out: bool) -> ModelProto {
        let mut proto = conv_model(channels, channels, 3, 1, [1; 4]);
        let graph = proto.graph.as_mut().unwrap();
        graph.node[0].output = vec!["d".to_owned()];
        let c = channels as i64;
        let weights = (0..channels * channels).map(|i| ((i * 29) % 17) as f32 / 8.0 - 1.0).collect();
        graph.initializer.push(float_tensor("w1", vec![c, c, 1, 1], weights));
        graph.initializer.push(float_tensor("b1", vec![c], (0..channels).map(|i| 0.5 - i as f32 * 0.125).collect()));
        graph.initializer.push(float_tensor("slope", vec![c, 1, 1], slopes.to_vec()));
        let pointwise = graph_node("Conv", &["d", "w1", "b1"], "c");
        graph.node.push(NodeProto { attribute: vec![ints_attribute("kernel_shape", vec![1, 1])], ..pointwise });
        graph.node.push(graph_node("Add", &["c", "x"], "s"));
        graph.node.push(graph_node("PRelu", &["s", "slope"], "y"));
        if depthwise_out {
            also_output(graph, "d");
        }
        proto
    }

    #[test]
    fn a_depthwise_convolution_read_only_by_a_pointwise_one_runs_with_it_and_gives_both() {
        // Planes of 16x16 (256 values, written 272 apart in between) and of 5x7 (35, written 48 apart).
        for ((h, w), depthwise_out) in [((16, 16), false), ((5, 7), false), ((16, 16), true)] {
            let (channels, pixels) = (5, h * w);
            let slopes = [0.5, -2.0, 3.0, 0.25, 19.8125];
            let x: Vec<f32> = (0..channels * pixels).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
            let depthwise = depthwise_by_hand(&x, channels, h, w, 3, 1, [1; 4]);
            let weight = |o: usize, i: usize| (((o * channels + i) * 29) % 17) as f32 / 8.0 - 1.0;
            let want: Vec<f32> = (0..channels * pixels)
                .map(|at| {
                    let (o, p) = (at / pixels, at % pixels);
                    let conv = (0..channels).map(|i| weight(o, i) * depthwise[i * pixels + p]).sum::<f32>();
                    let sum = 0.5 - o as f32 * 0.125 + conv + x[at];
                    if sum < 0.0 {
                        sum * slopes[o]
                    } else {
                        sum
                    }
                })
                .collect();
            let proto = separable_model(channels, &slopes, depthwise_out);
            let model = OnnxModel::from_proto(Path::new("sep.onnx"), proto, &[1, channels, h, w]).unwrap();
            let ran = operators_run(&model);
            let case = format!("{h}x{w}, depthwise output read elsewhere {depthwise_out}: {ran:?}");
            // Read elsewhere, the depthwise convolution's output is written as the model gives it, by itself.
            assert_eq!(ran.iter().any(|op| op == "SeparableConv"), !depthwise_out, "{case}");
            let outputs = model.run(x.clone()).unwrap();
            for (got, want) in outputs[0].iter().zip(&want) {
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{case}: {got} vs {want}");
            }
            if depthwise_out {
                assert!(outputs[1]
                    .iter()
                    .zip(&depthwise)
                    .all(|(got, want)| (got - want).abs() <= 1e-4 * want.abs().max(1.0)));
            }
        }
    }

    #[test]
    fn other_grouped_convolutions_are_left_to_tract() {
        // Two channels a group: grouped, not depthwise.
        let model =
            OnnxModel::from_proto(Path::new("grouped.onnx"), conv_model(4, 2, 3, 1, [1; 4]), &[1, 4, 6, 6]).unwrap();
        assert!(!format!("{:?}", model.plan().model()).contains("DepthwiseConv"));
        assert_eq!(model.run(vec![1.0; 4 * 36]).unwrap()[0].len(), 4 * 36);
    }

    #[test]
    fn the_halving_max_pool_gives_exactly_max_pool() {
        // Odd sides too: unpadded pooling drops the last row and column.
        for (h, w) in [(4, 6), (5, 7), (16, 16)] {
            let model = OnnxModel::from_proto(Path::new("pool.onnx"), max_pool_model(2, 2), &[2, 3, h, w]).unwrap();
            assert!(format!("{:?}", model.plan().model()).contains("HalvingMaxPool"), "our operator runs it");
            let x: Vec<f32> = (0..2 * 3 * h * w).map(|i| ((i * 7919) % 101) as f32 - 50.5).collect();
            let y = model.run(x.clone()).unwrap().remove(0);
            assert_eq!(y, max_pool_by_hand(&x, 6, h, w, 2, 2), "{h}x{w}");
        }
    }

    #[test]
    fn a_model_loaded_planar_reads_planes_and_gives_what_it_gave_on_the_interleaved_image() {
        // NHWC input, moved channels first, then pooled: as the detector and mesh models start.
        let mut proto = max_pool_model(2, 2);
        let graph = proto.graph.as_mut().unwrap();
        graph.node[0].input = vec!["moved".to_owned()];
        let transpose = NodeProto {
            op_type: "Transpose".to_owned(),
            input: vec!["x".to_owned()],
            output: vec!["moved".to_owned()],
            attribute: vec![ints_attribute("perm", vec![0, 3, 1, 2])],
            ..NodeProto::default()
        };
        graph.node.insert(0, transpose);
        let (h, w, c) = (4, 6, 3);
        let interleaved: Vec<f32> = (0..h * w * c).map(|i| ((i * 7919) % 101) as f32).collect();
        let planes: Vec<f32> = (0..c).flat_map(|k| interleaved.iter().skip(k).step_by(c).copied()).collect();
        let as_read = OnnxModel::from_proto(Path::new("nhwc.onnx"), proto.clone(), &[1, h, w, c]).unwrap();
        let planar = OnnxModel::from_proto_planar(Path::new("nhwc.onnx"), proto, [1, h, w, c]).unwrap();
        assert!(!format!("{:?}", planar.plan().model()).contains("Move"), "no transpose left");
        assert_eq!(planar.run(planes).unwrap(), as_read.run(interleaved).unwrap());
    }

    #[test]
    fn a_model_that_does_not_start_with_the_transpose_is_not_loaded_planar() {
        let error =
            OnnxModel::from_proto_planar(Path::new("pool.onnx"), max_pool_model(2, 2), [1, 4, 4, 3]).unwrap_err();
        assert!(error.to_string().contains("not first transposed"), "{error}");
    }

    #[test]
    fn differently_shaped_inputs_are_ours_and_alike_ones_are_left_to_tract() {
        // y = x - m, m repeated along the first axis, as the layer norms subtract each row's mean.
        let node = |op: &str| NodeProto {
            op_type: op.to_owned(),
            input: vec!["x".to_owned(), "m".to_owned()],
            ..NodeProto::default()
        };
        let m: Vec<f32> = (0..5).map(|i| i as f32 * 0.5 - 1.0).collect();
        let x: Vec<f32> = (0..15).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        let subtract = |a: f32, b: f32| a - b;
        for (op, apply) in [("Sub", subtract as fn(f32, f32) -> f32), ("Mul", |a, b| a * b)] {
            let proto = one_node_model(node(op), vec![float_tensor("m", vec![1, 5], m.clone())]);
            let model = OnnxModel::from_proto(Path::new("broadcast.onnx"), proto, &[3, 5]).unwrap();
            assert!(format!("{:?}", model.plan().model()).contains("BroadcastArithmetic"), "{op}: ours runs it");
            let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| apply(v, m[i % 5])).collect();
            assert_eq!(model.run(x.clone()).unwrap()[0], want, "{op}");
        }
        let alike = one_node_model(node("Sub"), vec![float_tensor("m", vec![3, 5], vec![1.0; 15])]);
        let model = OnnxModel::from_proto(Path::new("alike.onnx"), alike, &[3, 5]).unwrap();
        assert!(!format!("{:?}", model.plan().model()).contains("BroadcastArithmetic"));
        assert_eq!(model.run(x.clone()).unwrap()[0], x.iter().map(|v| v - 1.0).collect::<Vec<_>>());
    }

    #[test]
    fn a_plane_too_small_to_pool_gives_an_empty_output() {
        let model = OnnxModel::from_proto(Path::new("pool.onnx"), max_pool_model(2, 2), &[1, 2, 1, 4]).unwrap();
        assert_eq!(model.run(vec![1.0; 8]).unwrap()[0], Vec::<f32>::new());
    }

    #[test]
    fn other_max_pools_are_left_to_tract() {
        let model = OnnxModel::from_proto(Path::new("pool3.onnx"), max_pool_model(3, 1), &[1, 2, 5, 5]).unwrap();
        assert!(!format!("{:?}", model.plan().model()).contains("HalvingMaxPool"));
        let x: Vec<f32> = (0..50).map(|i| ((i * 31) % 17) as f32).collect();
        assert_eq!(model.run(x.clone()).unwrap().remove(0), max_pool_by_hand(&x, 2, 5, 5, 3, 1));
    }

    #[test]
    fn the_fused_prelu_gives_exactly_prelu_for_any_slope() {
        // Slopes like the models' own: negative, between 0 and 1, and far above 1.
        let slopes = [-5.3554688, 0.25, 1.0, 19.8125];
        let model = OnnxModel::from_proto(Path::new("prelu.onnx"), prelu_model(&slopes, &[4]), &[2, 4]).unwrap();
        let x = [-3.5, 0.0, 2.0, -0.001, 7.25, -1.0, -2.5, 1e-30];
        let y = model.run(x.to_vec()).unwrap().remove(0);
        for (i, (&x, &y)) in x.iter().zip(&y).enumerate() {
            let want = if x >= 0.0 { x } else { slopes[i % 4] * x };
            assert_eq!(y, want, "x = {x}, slope {}", slopes[i % 4]);
        }
    }

    #[test]
    fn the_fused_prelu_reads_channels_first_and_a_single_slope() {
        // Channels first (NCHW, slopes [C, 1, 1]): each channel's plane takes its own slope.
        let slopes = [0.5, -2.0, 3.0];
        let model = OnnxModel::from_proto(Path::new("nchw.onnx"), prelu_model(&slopes, &[3, 1, 1]), &[1, 3, 2, 2]);
        let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.5).collect();
        let y = model.unwrap().run(x.clone()).unwrap().remove(0);
        for (i, (&x, &y)) in x.iter().zip(&y).enumerate() {
            assert_eq!(y, if x >= 0.0 { x } else { slopes[i / 4] * x }, "x = {x}");
        }
        // One slope for every value.
        let model = OnnxModel::from_proto(Path::new("one.onnx"), prelu_model(&[0.1], &[1]), &[1, 3, 2, 2]);
        let y = model.unwrap().run(x.clone()).unwrap().remove(0);
        for (&x, &y) in x.iter().zip(&y) {
            assert_eq!(y, if x >= 0.0 { x } else { 0.1 * x }, "x = {x}");
        }
    }

    /// `y = PRelu(x + c)` (channels first, one slope a channel), the sum also an output when `sum_out`.
    fn add_prelu_model(slopes: &[f32], c: &[f32], sum_out: bool) -> ModelProto {
        let mut proto = prelu_model(slopes, &[slopes.len() as i64, 1, 1]);
        let graph = proto.graph.as_mut().unwrap();
        graph.node[0].input[0] = "sum".to_owned();
        graph.node.insert(0, graph_node("Add", &["x", "c"], "sum"));
        graph.initializer.push(float_tensor("c", vec![1, slopes.len() as i64, 2, 2], c.to_vec()));
        if sum_out {
            also_output(graph, "sum");
        }
        proto
    }

    #[test]
    fn a_prelu_adds_a_sum_only_it_reads_in_its_own_pass() {
        let slopes = [0.5, -2.0, 3.0];
        let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.5).collect();
        let c: Vec<f32> = (0..12).map(|i| ((i * 5) % 7) as f32 - 3.25).collect();
        let want: Vec<f32> = (0..12)
            .map(|i| {
                let sum = x[i] + c[i];
                if sum >= 0.0 {
                    sum
                } else {
                    slopes[i / 4] * sum
                }
            })
            .collect();
        let model = OnnxModel::from_proto(Path::new("add.onnx"), add_prelu_model(&slopes, &c, false), &[1, 3, 2, 2]);
        let model = model.unwrap();
        let ran = operators_run(&model);
        assert!(!ran.iter().any(|name| name.contains("Add")), "the addition is not run on its own: {ran:?}");
        assert_eq!(model.run(x.clone()).unwrap()[0], want);
        // The sum read elsewhere too (here, an output of the model): still right.
        let model = OnnxModel::from_proto(Path::new("sum.onnx"), add_prelu_model(&slopes, &c, true), &[1, 3, 2, 2]);
        let outputs = model.unwrap().run(x.clone()).unwrap();
        assert_eq!(outputs[0], want);
        assert_eq!(outputs[1], x.iter().zip(&c).map(|(x, c)| x + c).collect::<Vec<_>>());
    }

    #[test]
    fn a_constant_pad_is_ours_and_pads_as_onnx_says() {
        let node = NodeProto {
            op_type: "Pad".to_owned(),
            input: vec!["x".to_owned(), "pads".to_owned()],
            ..NodeProto::default()
        };
        // One channel more after the two there are, as BlazeFace pads before its residual additions.
        let pads = TensorProto {
            name: "pads".to_owned(),
            dims: vec![8],
            data_type: DataType::Int64 as i32,
            int64_data: vec![0, 0, 0, 0, 0, 1, 0, 0],
            ..TensorProto::default()
        };
        let model = OnnxModel::from_proto(Path::new("pad.onnx"), one_node_model(node, vec![pads]), &[1, 2, 2, 3]);
        let model = model.unwrap();
        assert!(operators_run(&model).contains(&"RunPad".to_owned()), "{:?}", operators_run(&model));
        let x: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let want: Vec<f32> = x.iter().copied().chain([0.0; 6]).collect();
        assert_eq!(model.run(x).unwrap()[0], want);
    }
}
