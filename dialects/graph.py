"""tessera.graph: the generic ops of Graph-IR — weights, embedding, RMSNorm, residual add, lm_head.

Graph-IR is the model as a stateless dataflow graph of whole layers with Hugging Face's semantics
(docs/graph_ir.md). Activations are `tensor<?xDxf32>` (tokens × features); weights are
`tessera.graph.weight` ops naming tensors of the Tessera weight layout.
"""

from __future__ import annotations

from xdsl.dialects.builtin import DYNAMIC_INDEX, Float64Type, FloatAttr, IntegerType, StringAttr, TensorType
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from tessera.dialects.verify_utils import activation, dims, expect_float, expect_shape, show, weights


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A named tensor of the model's weights.

    ```mlir
    %w = tessera.graph.weight "layers.0.norm.weight" : tensor<32xf32>
    ```
    """

    name = "tessera.graph.weight"
    weight_name = prop_def(StringAttr, prop_name="name")
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$name attr-dict `:` type($result)"

    def __init__(self, weight_name: str, result_type: Attribute):
        super().__init__(properties={"name": StringAttr(weight_name)}, result_types=[result_type])

    def verify_(self) -> None:
        if not self.weight_name.data:
            raise VerifyException("tessera.graph.weight: name must not be empty")
        shape = dims(self.name, "result", self.result)
        if any(d == DYNAMIC_INDEX for d in shape):
            raise VerifyException(
                f"tessera.graph.weight '{self.weight_name.data}': shape [{show(shape)}] must be static"
            )
        expect_float(self.name, "result", self.result)


@irdl_op_definition
class EmbeddingOp(IRDLOperation):
    """Rows of the embedding table for each token id.

    ```mlir
    %h = tessera.graph.embedding %ids, %table : (tensor<?xi64>, tensor<101x32xf32>) -> tensor<?x32xf32>
    ```
    """

    name = "tessera.graph.embedding"
    ids = operand_def(TensorType)
    table = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$ids `,` $table attr-dict `:` functional-type(operands, results)"

    def verify_(self) -> None:
        ids = dims(self.name, "ids", self.ids)
        assert isinstance(self.ids.type, TensorType)
        if len(ids) != 1 or not isinstance(self.ids.type.element_type, IntegerType):
            raise VerifyException(f"{self.name}: ids must be a 1-D integer tensor, got {self.ids.type}")
        weights(self.name, {"table": self.table})
        table = dims(self.name, "table", self.table)
        if len(table) != 2:
            raise VerifyException(f"{self.name}: table must be [vocab, hidden], got [{show(table)}]")
        expect_shape(self.name, "result", self.result, (ids[0], table[1]), "[tokens, hidden]")
        expect_float(self.name, "result", self.result)


@irdl_op_definition
class RMSNormOp(IRDLOperation):
    """x / sqrt(mean(x²) + epsilon) * weight over the last dimension.

    ```mlir
    %y = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
    ```
    """

    name = "tessera.graph.rmsnorm"
    x = operand_def(TensorType)
    weight = operand_def(TensorType)
    epsilon = prop_def(FloatAttr[Float64Type])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$x `,` $weight attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, weight: SSAValue, epsilon: float):
        super().__init__(
            operands=[x, weight],
            properties={"epsilon": FloatAttr(epsilon, Float64Type())},
            result_types=[x.type],
        )

    def verify_(self) -> None:
        features = activation(self.name, "x", self.x)
        weights(self.name, {"weight": self.weight})
        expect_shape(self.name, "weight", self.weight, (features,), "one scale per feature")
        if self.result.type != self.x.type:
            raise VerifyException(f"{self.name}: result type {self.result.type} must equal x's {self.x.type}")
        if not self.epsilon.value.data > 0:
            raise VerifyException(f"{self.name}: epsilon must be positive, got {self.epsilon.value.data}")


@irdl_op_definition
class AddOp(IRDLOperation):
    """The residual add: lhs + rhs, same shapes.

    ```mlir
    %s = tessera.graph.add %h, %m : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
    ```
    """

    name = "tessera.graph.add"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def verify_(self) -> None:
        activation(self.name, "lhs", self.lhs)
        if not (self.lhs.type == self.rhs.type == self.result.type):
            raise VerifyException(
                f"{self.name}: lhs {self.lhs.type}, rhs {self.rhs.type} and result {self.result.type} must match"
            )


@irdl_op_definition
class LMHeadOp(IRDLOperation):
    """Logits: x · weightᵀ.

    ```mlir
    %l = tessera.graph.lm_head %x, %w : (tensor<?x32xf32>, tensor<101x32xf32>) -> tensor<?x101xf32>
    ```
    """

    name = "tessera.graph.lm_head"
    x = operand_def(TensorType)
    weight = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$x `,` $weight attr-dict `:` functional-type(operands, results)"

    def verify_(self) -> None:
        features = activation(self.name, "x", self.x)
        weights(self.name, {"weight": self.weight})
        weight = dims(self.name, "weight", self.weight)
        if len(weight) != 2 or weight[1] != features:
            raise VerifyException(f"{self.name}: weight has shape [{show(weight)}], expected [vocab, {features}]")
        tokens = dims(self.name, "x", self.x)[0]
        expect_shape(self.name, "result", self.result, (tokens, weight[0]), "[tokens, vocab]")
        expect_float(self.name, "result", self.result)


TesseraGraph = Dialect("tessera.graph", [WeightOp, EmbeddingOp, RMSNormOp, AddOp, LMHeadOp])
