// The ONNX models the onnxruntime rows run, written as protobuf bytes here so that no Python
// (and no `onnx` package) is needed. Only the fields these graphs use are encoded; field
// numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
// ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto).

/** Opset 17: BatchNormalization-15 (training_mode) and ReduceMean-13 (axes as an attribute). */
const OPSET = 17;
/** The IR version that goes with opset 17. */
const IR_VERSION = 8;
const FLOAT = 1;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

type Field = Uint8Array;

function varint(value: number): number[] {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`varint: ${value} is not a safe integer >= 0`);
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return bytes;
}

function concat(parts: readonly Field[]): Field {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Wire type 0: an int64/int32/enum field. */
function int(field: number, value: number): Field {
  return Uint8Array.from([...varint(field << 3), ...varint(value)]);
}

/** Wire type 2: a string, bytes or an embedded message. */
function bytes(field: number, payload: Field | string): Field {
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return concat([Uint8Array.from([...varint((field << 3) | 2), ...varint(body.length)]), body]);
}

/** Wire type 5: a float field. */
function float32(field: number, value: number): Field {
  const out = new Uint8Array(5);
  out[0] = (field << 3) | 5;
  new DataView(out.buffer).setFloat32(1, value, true);
  return out;
}

type Attribute = number | { float: number } | readonly number[];

function attribute(name: string, value: Attribute): Field {
  if (typeof value === 'number') return concat([bytes(1, name), int(20, ATTR_INT), int(3, value)]);
  if ('float' in value) return concat([bytes(1, name), int(20, ATTR_FLOAT), float32(2, value.float)]);
  return concat([bytes(1, name), int(20, ATTR_INTS), ...value.map((v) => int(8, v))]);
}

export interface Node {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, Attribute>>;
}

function node(n: Node, index: number): Field {
  return concat([
    ...n.inputs.map((name) => bytes(1, name)),
    ...n.outputs.map((name) => bytes(2, name)),
    bytes(3, `${n.op.toLowerCase()}_${index}`),
    bytes(4, n.op),
    ...Object.entries(n.attributes ?? {}).map(([name, value]) => bytes(5, attribute(name, value))),
  ]);
}

/** A float tensor's name and shape (a graph input or output). */
export interface Value {
  name: string;
  dims: readonly number[];
}

function valueInfo(v: Value): Field {
  const shape = concat(v.dims.map((d) => bytes(1, int(1, d))));
  const tensorType = concat([int(1, FLOAT), bytes(2, shape)]);
  return concat([bytes(1, v.name), bytes(2, bytes(1, tensorType))]);
}

/** A serialized ModelProto of one graph over float32 tensors. */
export function model(graph: {
  nodes: readonly Node[];
  inputs: readonly Value[];
  outputs: readonly Value[];
}): Uint8Array {
  const body = concat([
    ...graph.nodes.map((n, i) => bytes(1, node(n, i))),
    bytes(2, 'batchnorm_peer'),
    ...graph.inputs.map((v) => bytes(11, valueInfo(v))),
    ...graph.outputs.map((v) => bytes(12, valueInfo(v))),
  ]);
  const opset = concat([bytes(1, ''), int(2, OPSET)]);
  return concat([int(1, IR_VERSION), bytes(2, 'batchnorm-bench-peers'), bytes(7, body), bytes(8, opset)]);
}

/** The layout of one workload as ONNX sees it: the shape, the axes reduced over, and the
 *  shape a per-channel tensor takes to broadcast against x (C at the channel axis, 1 elsewhere). */
export interface Layout {
  dims: readonly number[];
  /** Channel axis, in [0, rank). */
  axis: number;
}

function reduced(layout: Layout): number[] {
  return layout.dims.map((_, i) => i).filter((i) => i !== layout.axis);
}

export function channelDims(layout: Layout): number[] {
  return layout.dims.map((d, i) => (i === layout.axis ? d : 1));
}

const EPS_NODE: Node = { op: 'Constant', inputs: [], outputs: ['eps'], attributes: { value_float: { float: 1e-5 } } };

/** y = BatchNormalization(x, gamma, beta, mean, var): ONNX's op, channel axis 1 only.
 *  `training` sets training_mode=1 (outputs y and the updated running statistics). */
export function batchNormOp(layout: Layout, training: boolean): Uint8Array {
  if (layout.axis !== 1) throw new RangeError('BatchNormalization takes the channels at axis 1');
  const c = [layout.dims[1]];
  const stats = ['gamma', 'beta', 'mean', 'var'].map((name) => ({ name, dims: c }));
  return model({
    nodes: [
      {
        op: 'BatchNormalization',
        inputs: ['x', 'gamma', 'beta', 'mean', 'var'],
        outputs: training ? ['y', 'running_mean', 'running_var'] : ['y'],
        attributes: { epsilon: { float: 1e-5 }, momentum: { float: 0.9 }, training_mode: training ? 1 : 0 },
      },
    ],
    inputs: [{ name: 'x', dims: layout.dims }, ...stats],
    outputs: [
      { name: 'y', dims: layout.dims },
      ...(training ? ['running_mean', 'running_var'].map((name) => ({ name, dims: c })) : []),
    ],
  });
}

/** Evaluation as elementwise ops, for any channel axis: a = gamma / sqrt(var + eps) and
 *  b = beta - mean * a per channel, then y = x * a + b. */
export function evalGraph(layout: Layout): Uint8Array {
  const p = channelDims(layout);
  return model({
    nodes: [
      EPS_NODE,
      { op: 'Add', inputs: ['var', 'eps'], outputs: ['var_eps'] },
      { op: 'Sqrt', inputs: ['var_eps'], outputs: ['std'] },
      { op: 'Div', inputs: ['gamma', 'std'], outputs: ['a'] },
      { op: 'Mul', inputs: ['mean', 'a'], outputs: ['mean_a'] },
      { op: 'Sub', inputs: ['beta', 'mean_a'], outputs: ['b'] },
      { op: 'Mul', inputs: ['x', 'a'], outputs: ['xa'] },
      { op: 'Add', inputs: ['xa', 'b'], outputs: ['y'] },
    ],
    inputs: [{ name: 'x', dims: layout.dims }, ...['gamma', 'beta', 'mean', 'var'].map((name) => ({ name, dims: p }))],
    outputs: [{ name: 'y', dims: layout.dims }],
  });
}

/** Training-mode batch norm as a graph, for any channel axis: batch mean and biased
 *  variance by ReduceMean over every axis but the channel's, then
 *  y = (x - mean) * gamma / sqrt(var + eps) + beta. Outputs y, mean and var. */
export function trainGraph(layout: Layout): Uint8Array {
  const p = channelDims(layout);
  const axes = reduced(layout);
  return model({
    nodes: [
      EPS_NODE,
      { op: 'ReduceMean', inputs: ['x'], outputs: ['mean'], attributes: { axes, keepdims: 1 } },
      { op: 'Sub', inputs: ['x', 'mean'], outputs: ['d'] },
      { op: 'Mul', inputs: ['d', 'd'], outputs: ['d2'] },
      { op: 'ReduceMean', inputs: ['d2'], outputs: ['var'], attributes: { axes, keepdims: 1 } },
      { op: 'Add', inputs: ['var', 'eps'], outputs: ['var_eps'] },
      { op: 'Sqrt', inputs: ['var_eps'], outputs: ['std'] },
      { op: 'Div', inputs: ['gamma', 'std'], outputs: ['a'] },
      { op: 'Mul', inputs: ['d', 'a'], outputs: ['da'] },
      { op: 'Add', inputs: ['da', 'beta'], outputs: ['y'] },
    ],
    inputs: [{ name: 'x', dims: layout.dims }, ...['gamma', 'beta'].map((name) => ({ name, dims: p }))],
    outputs: [
      { name: 'y', dims: layout.dims },
      { name: 'mean', dims: p },
      { name: 'var', dims: p },
    ],
  });
}
