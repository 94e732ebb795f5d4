/** The image checker (notes §5.1, §6): see `inspect/index.ts`. */
export * from './inspect/index';
