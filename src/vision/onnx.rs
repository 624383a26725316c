//! One ONNX model, parsed, given a fixed input shape and optimised once by tract, then run many times.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

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

/// A loaded model with one float input of a fixed shape. Cheap to share: `run` takes `&self`.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    name: String,
    input_shape: Vec<usize>,
    plan: Arc<TypedRunnableModel>,
}

impl OnnxModel {
    /// Reads, types and optimises the model at `path` for an `input_shape` float32 input.
    pub fn load(path: &Path, input_shape: &[usize]) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|_| ModelError::Missing(path.to_owned()))?;
        Self::from_bytes(path, &bytes, input_shape)
    }

    /// As [`OnnxModel::load`], from bytes already read (and checked) by the caller.
    pub fn from_bytes(path: &Path, bytes: &[u8], input_shape: &[usize]) -> Result<Self, ModelError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| ModelError::Load { path: path.to_owned(), message: format!("{e:#}") })?;
        Self::from_proto(path, proto, input_shape)
    }

    /// As [`OnnxModel::load`], from the parsed protobuf; `path` names the model in errors.
    fn from_proto(
        path: &Path,
        mut proto: tract_onnx::pb::ModelProto,
        input_shape: &[usize],
    ) -> Result<Self, ModelError> {
        let load_error = |e: TractError| ModelError::Load { path: path.to_owned(), message: format!("{e:#}") };
        if let Some(graph) = proto.graph.as_mut() {
            rewrite_prelu(graph);
        }
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|model| model.with_input_fact(0, f32::fact(input_shape).into()))
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(load_error)?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Self { name, input_shape: input_shape.to_vec(), plan })
    }

    /// Runs the model on `input` (row-major, exactly the input shape's length) and returns every output
    /// flattened, in the model's output order.
    pub fn run(&self, input: Vec<f32>) -> Result<Vec<Vec<f32>>, ModelError> {
        let fail = |e: TractError| ModelError::Inference { model: self.name.clone(), message: format!("{e:#}") };
        let tensor = Tensor::from_shape(&self.input_shape, &input).map_err(fail)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(fail)?;
        outputs
            .iter()
            .map(|output| Ok(output.to_plain_array_view::<f32>().map_err(fail)?.iter().copied().collect()))
            .collect()
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

/// Replaces every `PRelu(x, slope)` with `Relu(x) + slope * (x - Relu(x))`, the same values exactly
/// (`x - Relu(x)` is `min(x, 0)`). tract expands PRelu into a comparison and a select that it runs slowly:
/// measured with `examples/profile_models.rs`, this took FaceMesh from 31.9 to 26.7 ms and MiniFASNet V2 from
/// 12.1 to 6.4 ms. (A two-pass `x + (slope - 1) * Min(x, 0)` measured no faster and is not exact.)
fn rewrite_prelu(graph: &mut tract_onnx::pb::GraphProto) {
    use tract_onnx::pb::NodeProto;
    let node = |op: &str, name: String, inputs: &[&str], output: String| NodeProto {
        op_type: op.to_owned(),
        input: inputs.iter().map(|i| (*i).to_owned()).collect(),
        output: vec![output],
        name,
        ..NodeProto::default()
    };
    for original in std::mem::take(&mut graph.node) {
        let is_prelu = original.op_type == "PRelu" && original.domain.is_empty();
        let (true, [x, slope], [y]) = (is_prelu, original.input.as_slice(), original.output.as_slice()) else {
            graph.node.push(original);
            continue;
        };
        let part = |suffix: &str| format!("{}.{suffix}", if original.name.is_empty() { y } else { &original.name });
        let (positive, negative, scaled) = (part("positive"), part("negative"), part("scaled"));
        graph.node.push(node("Relu", part("relu"), &[x], positive.clone()));
        graph.node.push(node("Sub", part("sub"), &[x, &positive], negative.clone()));
        graph.node.push(node("Mul", part("mul"), &[slope, &negative], scaled.clone()));
        graph.node.push(node("Add", part("add"), &[&positive, &scaled], y.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
    use tract_onnx::pb::{type_proto, TensorProto, TypeProto, ValueInfoProto};

    /// A one-node model: `y = PRelu(x, slopes)` with `x` of shape [2, slopes.len()].
    fn prelu_model(slopes: &[f32]) -> ModelProto {
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
            node: vec![NodeProto {
                op_type: "PRelu".to_owned(),
                name: "activation".to_owned(),
                input: vec!["x".to_owned(), "slope".to_owned()],
                output: vec!["y".to_owned()],
                ..NodeProto::default()
            }],
            initializer: vec![TensorProto {
                name: "slope".to_owned(),
                dims: vec![slopes.len() as i64],
                data_type: DataType::Float as i32,
                float_data: slopes.to_vec(),
                ..TensorProto::default()
            }],
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

    #[test]
    fn prelu_becomes_four_vectorisable_nodes() {
        let mut graph = prelu_model(&[0.25]).graph.unwrap();
        rewrite_prelu(&mut graph);
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Relu", "Sub", "Mul", "Add"]);
        assert_eq!(graph.node[3].output, ["y"], "the rewritten chain ends in the original output");
    }

    #[test]
    fn the_rewritten_prelu_gives_exactly_prelu_for_any_slope() {
        // Slopes like the models' own: negative, between 0 and 1, and far above 1.
        let slopes = [-5.3554688, 0.25, 1.0, 19.8125];
        let model = OnnxModel::from_proto(Path::new("prelu.onnx"), prelu_model(&slopes), &[2, 4]).unwrap();
        let x = [-3.5, 0.0, 2.0, -0.001, 7.25, -1.0, -2.5, 1e-30];
        let y = model.run(x.to_vec()).unwrap().remove(0);
        for (i, (&x, &y)) in x.iter().zip(&y).enumerate() {
            let want = if x >= 0.0 { x } else { slopes[i % 4] * x };
            assert_eq!(y, want, "x = {x}, slope {}", slopes[i % 4]);
        }
    }
}
