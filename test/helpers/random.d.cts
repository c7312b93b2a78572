// Types for random.cjs.
/** mulberry32: numbers in [0, 1), the same sequence for the same seed. */
export declare function generator(seed: number): () => number;
