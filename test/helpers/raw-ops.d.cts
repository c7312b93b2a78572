// Types for raw-ops.cjs (plain CommonJS so that child processes and workers can load it).
export type OpName = 'train' | 'trainWithStats' | 'eval' | 'backward' | 'backwardWithSums' | 'moments' | 'gradSums';
export type DType = 'f32' | 'f64';
export type ParamKind =
  | 'data'
  | 'channel'
  | 'channel64'
  | 'shape'
  | 'axis'
  | 'eps'
  | 'momentum'
  | 'correction'
  | 'count'
  | 'flag';

export interface Param {
  name: string;
  kind: ParamKind;
  optional: boolean;
  written: boolean;
  /** A count's place in the options object: options.stats.count or options.sums.count. */
  field?: 'stats' | 'sums';
}

export interface RawCall {
  op: OpName;
  dtype: DType;
  params: Param[];
  args: unknown[];
  /** Changes or replaces the options object the binding gets (hostile tests). */
  options?: (o: Record<string, unknown>) => unknown;
}

export interface MakeCallOptions {
  shape?: number[];
  axis?: number;
  /** null: constant inputs (fast); a number: seeded random inputs. */
  seed?: number | null;
  /** Also give the optional arrays (gamma, beta, running stats, y). */
  full?: boolean;
  sentinel?: number;
}

export declare const OPS: Record<OpName, Param[]>;
export declare const IN_PLACE: Partial<Record<OpName, string>>;
export declare const DTYPES: { f32: Float32ArrayConstructor; f64: Float64ArrayConstructor };
export declare function fnName(op: OpName, dtype: DType, async: boolean): string;
export declare function layoutOf(dims: number[], axis: number): { size: number; channels: number; perChannel: number };
/** The binding's arguments: the arrays positionally, then the options object. */
export declare function bindingArgs(call: RawCall): unknown[];
export declare function makeCall(op: OpName, dtype: DType, options?: MakeCallOptions): RawCall;
export declare function snapshotBuffers(args: unknown[]): Map<ArrayBufferLike, Uint8Array>;
export declare function changedBuffer(snapshot: Map<ArrayBufferLike, Uint8Array>): string | null;
export declare function outputsOf(call: RawCall): Record<string, number[]>;
export declare function invoke(binding: unknown, call: RawCall, async: boolean): Promise<unknown>;
